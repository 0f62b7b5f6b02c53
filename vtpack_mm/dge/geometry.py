"""Static index tables of the region/patch partition of one feature map.

Everything here depends only on the map size (H, W), the granularities and the region
size, so it is computed once per shape and device and cached.
"""
import math
from functools import reduce
from typing import NamedTuple, Optional, Sequence, Tuple, Union

import torch

LAYER = 'layer'


def check_granularities(granularities: Sequence[int],
                        region_size: Union[int, str, None]) -> Tuple[Tuple[int, ...], Union[int, str]]:
    """Validate a granularity set and region size; return them normalised.

    ``region_size=None`` means ``max(granularities)``; ``'layer'`` means one region that
    covers the whole map (layer-wise routing). A granularity of 0 means the region is
    skipped: it gets no query and its tokens pass through unchanged.
    """
    if isinstance(granularities, int) or granularities is None:
        raise TypeError(f'granularities must be a sequence of ints, got {granularities!r}')
    phis = tuple(int(g) for g in granularities)
    if len(phis) == 0:
        raise ValueError('granularities is empty: give at least one patch side, e.g. (1, 2, 4)')
    if any(g < 0 for g in phis):
        raise ValueError(f'granularities must be >= 0 (0 = skip the region), got {phis}')
    if len(set(phis)) != len(phis):
        raise ValueError(f'granularities has repeated values: {phis}')
    positive = [g for g in phis if g > 0]
    if not positive:
        raise ValueError(f'granularities {phis} has no positive patch side')
    if region_size is None:
        region_size = max(positive)
    if region_size == LAYER:
        return phis, LAYER
    if not isinstance(region_size, int) or region_size <= 0:
        raise ValueError(f"region_size must be a positive int, None or 'layer', got {region_size!r}")
    bad = [g for g in positive if region_size % g != 0]
    if bad:
        raise ValueError(f'granularities {bad} do not divide the region size {region_size}: '
                         f'every patch side must tile the {region_size}x{region_size} region')
    return phis, region_size


def padded_layout(hw: Tuple[int, int], granularities: Sequence[int],
                  region_size: Union[int, str]) -> Tuple[int, int, int, int]:
    """(Hp, Wp, Sh, Sw): the map padded bottom-right to whole regions of Sh x Sw."""
    H, W = int(hw[0]), int(hw[1])
    if region_size == LAYER:
        positive = [g for g in granularities if g > 0]
        m = reduce(lambda a, b: a * b // math.gcd(a, b), positive)
        Hp, Wp = -(-H // m) * m, -(-W // m) * m
        return Hp, Wp, Hp, Wp
    S = int(region_size)
    return -(-H // S) * S, -(-W // S) * S, S, S


def num_regions(hw, granularities, region_size) -> int:
    Hp, Wp, Sh, Sw = padded_layout(hw, granularities, region_size)
    return (Hp // Sh) * (Wp // Sw)


class ExportGroup(NamedTuple):
    """One group of the patch list as the export lays out its queries: the phi = 1
    patches (``row``: the token each one is) or the coarser ones (``row``: its row in the
    table of the coarse patch means, ``coarse_sides`` one after another); each patch's
    region, granularity index and validity, and its rows of the compiled ops (``meta``:
    image 0, y0, x0, phi, branch 0)."""
    num_patches: int
    region: torch.Tensor
    k: torch.Tensor
    valid: torch.Tensor
    row: torch.Tensor
    meta: torch.Tensor


class RegionGeometry:
    """Index tables of an ``H x W`` map split into regions and grained patches.

    The map is padded bottom-right to whole regions. For granularity ``phi`` the padded map
    is tiled by ``phi x phi`` patches; a patch with no valid (unpadded) position is invalid
    and never becomes a query. Patches of all granularities are numbered in one list,
    region by region (raster order of regions), granularity by granularity inside a region.

    Attributes (tensors on ``device``):
        pos_region (HW,): region index of each valid position (row-major).
        pos_patch (K, HW): patch index of each position at each granularity (-1 for phi=0).
        patch_region, patch_k, patch_valid (P,): the patch list: each patch's region,
            granularity index and whether it holds a valid position.
        patch_level, patch_phi, patch_y0, patch_x0 (P,): its index in ``levels``, its
            granularity and its top-left position.
        patch_src (P,): index of each valid patch in its granularity's grid of valid
            patches (ceil(H / phi) x ceil(W / phi), row-major), -1 if invalid.
        patch_rank (P,): index of each valid patch among all valid patches (-1 if invalid).
        patch_table_row (P,): row of each valid patch in the table of one image's patch
            means (every granularity's valid grid, row-major, granularity after
            granularity; ``table_size`` rows), meaningless if invalid.
        export_groups: the export's two :class:`ExportGroup` of patches, those of phi = 1
            and the coarser ones, and ``export_pos_patch`` (K, HW), ``pos_patch`` with the
            patches numbered group after group (:mod:`.traced_queries`).
        levels: per positive granularity, its index k, phi and its valid grid size.
        region_queries (R, K): valid patches per region at each granularity.
    """

    def __init__(self, hw: Tuple[int, int], granularities: Sequence[int],
                 region_size: Union[int, str], device=None):
        H, W = int(hw[0]), int(hw[1])
        if H <= 0 or W <= 0:
            raise ValueError(f'feature map must be non-empty, got {H}x{W}')
        phis = tuple(granularities)
        Hp, Wp, Sh, Sw = padded_layout((H, W), phis, region_size)
        self.hw = (H, W)
        self.padded_hw = (Hp, Wp)
        self.region_hw = (Sh, Sw)
        self.grid = (Hp // Sh, Wp // Sw)
        self.num_regions = self.grid[0] * self.grid[1]
        self.granularities = phis
        Rw = self.grid[1]

        kw = dict(device=device, dtype=torch.long)
        hh = torch.arange(H, **kw).repeat_interleave(W)
        ww = torch.arange(W, **kw).repeat(H)
        self.pos_region = (hh // Sh) * Rw + ww // Sw

        pos_patch, cols = [], dict(region=[], k=[], level=[], valid=[], src=[], y0=[], x0=[])
        self.levels = []  # one per positive granularity
        base = 0
        for k, phi in enumerate(phis):
            if phi == 0:
                pos_patch.append(torch.full((H * W,), -1, **kw))
                continue
            gh, gw = Hp // phi, Wp // phi
            vh, vw = -(-H // phi), -(-W // phi)  # patches holding a valid position
            pos_patch.append(base + (hh // phi) * gw + ww // phi)
            gy = torch.arange(gh, **kw).repeat_interleave(gw)
            gx = torch.arange(gw, **kw).repeat(gh)
            valid = (gy < vh) & (gx < vw)
            cols['region'].append((gy * phi // Sh) * Rw + gx * phi // Sw)
            cols['k'].append(torch.full((gh * gw,), k, **kw))
            cols['level'].append(torch.full((gh * gw,), len(self.levels), **kw))
            cols['valid'].append(valid)
            cols['src'].append(torch.where(valid, gy * vw + gx, torch.full_like(gy, -1)))
            cols['y0'].append(gy * phi)
            cols['x0'].append(gx * phi)
            self.levels.append(dict(k=k, phi=phi, valid_hw=(vh, vw)))
            base += gh * gw
        # The patch list is ordered region by region (raster order of regions; inside a
        # region, granularity by granularity, raster order): queries are numbered in this
        # order, so the patches of neighbouring queries sit close together in memory.
        order = torch.sort(torch.cat(cols['region']), stable=True).indices
        new_index = torch.empty_like(order)
        new_index[order] = torch.arange(order.numel(), **kw)
        pos_patch = torch.stack(pos_patch)
        self.pos_patch = torch.where(pos_patch >= 0, new_index[pos_patch.clamp(min=0)],
                                     pos_patch)
        for name, parts in cols.items():
            setattr(self, 'patch_' + name, torch.cat(parts)[order])
        self.patch_phi = torch.tensor([lv['phi'] for lv in self.levels],
                                      **kw)[self.patch_level]
        self.patch_rank = torch.where(self.patch_valid, self.patch_valid.cumsum(0) - 1,
                                      torch.full_like(self.patch_k, -1))
        # one (P, 4) table (y0, x0, phi, level) of which the four are views: the kernels'
        # rows of the patches (GrainedQueries.meta), without a copy of the columns
        self.patch_meta = torch.stack([self.patch_y0, self.patch_x0, self.patch_phi,
                                       self.patch_level], 1)
        self.patch_y0, self.patch_x0, self.patch_phi, self.patch_level = \
            self.patch_meta.unbind(1)
        self._extra_meta = {}
        self.num_valid_patches = int(self.patch_valid.sum())
        sizes = [lv['valid_hw'][0] * lv['valid_hw'][1] for lv in self.levels]
        starts = [sum(sizes[:j]) for j in range(len(sizes))]
        self.patch_table_row = torch.tensor(starts, **kw)[self.patch_level] + self.patch_src
        self.table_size = sum(sizes)
        # the export's two groups of queries (dge/traced_queries.py): the phi = 1 patches,
        # read from the tokens themselves, and the coarser ones, read from a table of
        # their means; each group's patches in patch-list order
        coarse = [(lv['phi'], n) for lv, n in zip(self.levels, sizes) if lv['phi'] > 1]
        self.coarse_sides = tuple(phi for phi, _ in coarse)
        self._coarse_rows, start = {}, 0
        for phi, n in coarse:
            self._coarse_rows[phi] = slice(start, start + n)
            start += n
        level_start = torch.tensor([self._coarse_rows[lv['phi']].start if lv['phi'] > 1 else 0
                                    for lv in self.levels], **kw)
        coarse_row = level_start[self.patch_level] + self.patch_src
        self.export_groups = []
        renumber = torch.empty_like(self.patch_k)
        for ids, row in (((self.patch_phi == 1).nonzero()[:, 0], self.patch_src),
                         ((self.patch_phi > 1).nonzero()[:, 0], coarse_row)):
            renumber[ids] = sum(g.num_patches for g in self.export_groups) + \
                torch.arange(ids.numel(), **kw)
            self.export_groups.append(ExportGroup(
                ids.numel(), self.patch_region[ids], self.patch_k[ids],
                self.patch_valid[ids], row[ids],
                torch.cat([torch.zeros_like(ids).unsqueeze(1), self.patch_meta[ids, :3],
                           torch.zeros_like(ids).unsqueeze(1)], 1)))
        # pos_patch with the patches numbered group after group
        self.export_pos_patch = torch.where(self.pos_patch >= 0,
                                            renumber[self.pos_patch.clamp(min=0)],
                                            self.pos_patch)

        R, K = self.num_regions, len(phis)
        flat = self.patch_region * K + self.patch_k
        self.region_queries = torch.zeros(R * K, device=device).index_add_(
            0, flat, self.patch_valid.float()).view(R, K)

    @property
    def pool_sides(self) -> Tuple[int, ...]:
        """The positive granularities, in the order of ``levels`` (and of the table of patch
        means, ``patch_table_row``)."""
        return tuple(lv['phi'] for lv in self.levels)

    def coarse_rows_of(self, side: int) -> Optional[slice]:
        """The rows of the ``side x side`` patch means in the table of the coarse sides
        (``coarse_sides``: the granularities above 1), or None where ``side`` is not one."""
        return self._coarse_rows.get(side)

    @property
    def has_skip(self) -> bool:
        return 0 in self.granularities

    def extra_meta(self, batch_size: int, num_extra: int) -> torch.Tensor:
        """(B * E, 5) the kernels' rows of the extra tokens, image after image: (image,
        extra index, 0, 0, 0)."""
        key = (batch_size, num_extra)
        rows = self._extra_meta.get(key)
        if rows is None:
            kw = dict(dtype=torch.long, device=self.patch_phi.device)
            rows = torch.zeros(batch_size * num_extra, 5, **kw)
            rows[:, 0] = torch.arange(batch_size, **kw).repeat_interleave(num_extra)
            rows[:, 1] = torch.arange(num_extra, **kw).repeat(batch_size)
            if len(self._extra_meta) >= 8:  # a few batch sizes in use at a time
                self._extra_meta.clear()
            self._extra_meta[key] = rows
        return rows


class GeometryCache:
    """A small per-module cache of :class:`RegionGeometry` keyed by shape and device."""

    def __init__(self, granularities, region_size, max_entries: int = 16):
        self.granularities = granularities
        self.region_size = region_size
        self.max_entries = max_entries
        self._cache = {}

    def get(self, hw, device) -> RegionGeometry:
        key = (int(hw[0]), int(hw[1]), str(device))
        geo = self._cache.get(key)
        if geo is None:
            if len(self._cache) >= self.max_entries:
                self._cache.pop(next(iter(self._cache)))
            # normal tensors even when first asked for under torch.inference_mode: a
            # later training pass saves some of them for its backward pass
            with torch.inference_mode(False):
                geo = RegionGeometry(hw, self.granularities, self.region_size, device)
            self._cache[key] = geo
        return geo
