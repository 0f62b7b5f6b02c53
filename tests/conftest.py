import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from hypothesis import settings
from torch import nn

from vtpack_mm.dge import SparseQueryBlock


# Property tests draw the same examples on every run (a failure reproduces as it is) and
# print the blob that replays a failing example; HYPOTHESIS_PROFILE=explore draws anew.
settings.register_profile('ci', derandomize=True, print_blob=True)
settings.register_profile('explore', print_blob=True)
settings.load_profile(os.environ.get('HYPOTHESIS_PROFILE', 'ci'))


@pytest.fixture(autouse=True)
def _own_message_hubs():
    """Each test sees only the MessageHubs it creates. mmengine keeps one hub per
    experiment name, and a Runner built without a config file is named after the second it
    starts: Runners of two tests started in the same second would share one hub, and the
    second would log (and save in its checkpoints) on top of the first's history."""
    from mmengine.logging import MessageHub
    before = dict(MessageHub._instance_dict)
    yield
    MessageHub._instance_dict.clear()
    MessageHub._instance_dict.update(before)


class TinyBlock(SparseQueryBlock):
    """A minimal pre-norm attention + MLP block over dense keys/values, for core tests."""

    def __init__(self, dims=8, heads=2, dge_cfg=None):
        super().__init__(dims, dge_cfg)
        self.heads = heads
        self.norm1 = nn.LayerNorm(dims)
        self.q = nn.Linear(dims, dims)
        self.kv = nn.Linear(dims, 2 * dims)
        self.proj = nn.Linear(dims, dims)
        self.norm2 = nn.LayerNorm(dims)
        self.fc1 = nn.Linear(dims, 3 * dims)
        self.fc2 = nn.Linear(3 * dims, dims)

    def forward_queries(self, q, queries, x):
        B, N, C = x.shape
        h, d = self.heads, C // self.heads
        k, v = self.kv(self.norm1(x)).view(B, N, 2, h, d).permute(2, 0, 3, 1, 4)
        qp = queries.to_padded(self.q(self.norm1(q)))
        L = qp.shape[1]
        a = F.scaled_dot_product_attention(qp.view(B, L, h, d).transpose(1, 2), k, v)
        a = queries.from_padded(a.transpose(1, 2).reshape(B, L, C))
        q = q + self.proj(a)
        return q + self.fc2(F.gelu(self.fc1(self.norm2(q))))

    def query_macs(self, num_inputs, num_queries, hw):
        C = self.q.in_features
        per_input = 2 * C * C
        per_query = 2 * C * C + 2 * num_inputs * C + 6 * C * C
        return per_input * num_inputs + per_query * num_queries


@pytest.fixture
def tiny_block():
    def make(dims=8, heads=2, dge_cfg=None, seed=0):
        torch.manual_seed(seed)
        return TinyBlock(dims, heads, dge_cfg)

    return make


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_shapes(out, *extra):
    """The embedded shapes data, small: 8 training and 4 validation images of 64 px."""
    subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'misc', 'make_shapes_dataset.py'),
                    str(out), '--num-train', '8', '--num-val', '4', '--size', '64', *extra],
                   check=True, capture_output=True)


@pytest.fixture(scope='session')
def shapes(tmp_path_factory):
    """Folder of the small shapes data (coco/, ade/, imagenet/), made once per session."""
    out = tmp_path_factory.mktemp('shapes')
    make_shapes(out)
    return out
