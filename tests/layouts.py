"""Our backbones' weights written out in other projects' key layouts, for loading tests.

Each function is the plain inverse of a naming scheme (facts about key names only), written
separately from the converters under test.
"""
import torch


def randomize(module, seed=0, scale=0.2):
    """Random values in every parameter, norms and routers included, so a mis-mapped key
    cannot go unnoticed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return module


def official_pvt_state(state):
    """Our PVT/DPVT keys -> the official PVT v1 (and vtpack) names."""
    out = {}
    for k, v in state.items():
        parts = k.split('.')
        if k.startswith('stages.'):
            i = int(parts[1]) + 1
            rest = '.'.join(parts[2:])
            if rest.startswith('patch_embed.'):
                sub = rest[len('patch_embed.'):].replace('projection', 'proj')
                out[f'patch_embed{i}.{sub}'] = v
            elif rest == 'pos_embed':
                out[f'pos_embed{i}'] = v
            else:
                j, sub = parts[3], '.'.join(parts[4:])
                sub = sub.replace('ffn.layers.0.0', 'mlp.fc1').replace('ffn.layers.1', 'mlp.fc2')
                out[f'block{i}.{j}.{sub}'] = v
        else:
            out[k] = v
    return out


def _fuse_qkv(state, rename):
    out = {}
    for k, v in state.items():
        if '.attn.kv.' in k:
            continue
        if '.attn.q.' in k:
            v = torch.cat([v, state[k.replace('.attn.q.', '.attn.kv.')]])
            k = k.replace('.attn.q.', '.attn.qkv.')
        out[rename(k)] = v
    return out


def timm_deit_state(state):
    """Our DeiT keys -> official DeiT / timm ViT names (fused qkv, mlp.fc1/fc2)."""
    def rename(k):
        return (k.replace('patch_embed.projection.', 'patch_embed.proj.')
                .replace('ffn.layers.0.0.', 'mlp.fc1.').replace('ffn.layers.1.', 'mlp.fc2.'))
    return _fuse_qkv(state, rename)


def mmpretrain_deit_state(state):
    """Our DeiT keys -> mmpretrain VisionTransformer names (layers.i, ln1/ln2, final ln1)."""
    def rename(k):
        if k.startswith('norm.'):
            return 'ln1.' + k[len('norm.'):]
        return (k.replace('blocks.', 'layers.').replace('.norm1.', '.ln1.')
                .replace('.norm2.', '.ln2.'))
    return _fuse_qkv(state, rename)
