"""The guide network: (input, output) pairs of a record -> one logit per DSL primitive.

DeepCoder-style (Balog et al. 2017): each pair is encoded on its own, the pair codes are
pooled over the record's pairs, and a head gives one independent logit per primitive
("this primitive appears in the program"), in ``PRIMITIVES`` order.

A grid is encoded from its one-hot colours plus an "inside the grid" channel. Batches
arrive padded to their largest grid (not to 30x30) with the shapes beside them; the
encoder then packs the real cells of all grids onto one canvas, so compute follows the
real cells (on CPU these small convs are memory-bound: padding was 4-6x the real cells),
in channels-last memory (oneDNN runs these few-channel convs 2-3x faster that way).
A small conv stack (masked after every layer, so nothing leaks between grids) gives local
features, pooled over an R x R layout of regions scaled to each grid's own size (so where
colour mass sits survives pooling: flips, rotations and gravity move it) and by max.

The pair code sees both grid codes, their difference, the shape ratios, and three explicit
relational views that make the model learn from far fewer samples: the distance between
the input and output layouts under each of the 8 symmetries of the square, the 10x10
colour-transition histogram of same-shape pairs, and a 3x3 conv over the stacked input and
output of same-shape pairs (what changed around each cell).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tasks.arc_guide.dsl import MAX_SIDE, N_COLOURS
from tasks.arc_guide.relations import N_RELATIONS


GAP = 2  # empty cells between packed grids: covers the 3x3 stem and one half-resolution cell


@dataclass
class Canvas:
    """Where each cell of each grid sits on the packed canvas (all index tensors are flat).

    A batch's grids are shelf-packed onto one (height, width) canvas at even offsets with
    GAP empty cells between them, so the convolutions run over the real cells (plus gaps),
    not over every grid padded to the batch's largest. Layers re-mask after each step, so
    nothing crosses a gap.
    """

    height: int
    width: int
    n_grids: int
    source: torch.Tensor  # (M,) index into the (N*H*W) padded grids of each real cell
    position: torch.Tensor  # (M,) flat canvas position of that cell
    grid: torch.Tensor  # (M,) grid id of that cell
    region: torch.Tensor  # (M,) region id (R x R layout scaled to its grid)
    half: torch.Tensor  # (M2,) indices into the M cells sitting at even (row, col) of their grid
    half_position: torch.Tensor  # (M2,) flat position on the half-resolution canvas

    def one_hot(self, channels: int, hot: list[torch.Tensor]) -> torch.Tensor:
        """(1, channels, height, width) float canvas in channels-last memory, zero except
        channel ``hot[i][m]`` at cell m's position for each i (no two may collide).

        Channels-last because the convolutions over these few-channel canvases run 2-3x
        faster in oneDNN that way on CPU, and one cell's channels are then one row of the
        (height * width, channels) view that :func:`cells` gathers from."""
        x = torch.zeros((self.height * self.width, channels), device=self.position.device)
        for channel in hot:
            x.view(-1)[self.position * channels + channel] = 1.0
        return x.view(1, self.height, self.width, channels).permute(0, 3, 1, 2)


def cells(canvas: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """(1, C, H, W) canvas, (M,) flat positions -> (M, C) features of those cells.
    On a channels-last canvas the (H*W, C) view costs nothing and each cell is one
    contiguous row, so the gather copies rows (its backward adds rows back)."""
    rows = canvas.permute(0, 2, 3, 1).reshape(-1, canvas.shape[1])  # (H*W, C)
    return rows.index_select(0, position)


def size_class(v: int, bits: int = 3) -> int:
    """``v`` rounded up to a value with at most ``bits + 1`` significant bits (at most
    1/2**bits larger): 8 classes per doubling, so a run's batches reuse a few sizes."""
    step = 1 << max(0, v.bit_length() - 1 - bits)
    return -(-v // step) * step


def _even(v: int) -> int:
    return v + (v & 1)


def pack_canvas(shapes: np.ndarray, padded_hw: tuple[int, int], regions: int, device: torch.device) -> Canvas:
    """Shelf-pack grids of ``shapes`` (N, 2) (0x0 = absent) taken from a (N, H, W) batch.

    The canvas sides and the cell counts are rounded up to a size class (:func:`size_class`):
    the cells added belong to a dummy grid ``N`` sitting alone on a dump cell below the
    packed grids (consumers size their per-grid outputs N + 1 and drop the last). Batches
    then allocate tensors of a few recurring sizes, which the allocator reuses; sizes that
    change every step fragment glibc's heap, and a run's resident memory grew with its
    step count (batch 336 on 2 cores: 1.16 GiB after 30 steps, 1.78 GiB after 240, for a
    0.9 GiB step) where no memory plan could foresee it."""
    shapes = shapes.astype(np.int64)
    rows, cols = shapes[:, 0], shapes[:, 1]
    present = np.flatnonzero(rows > 0)
    slot_h = rows + (rows & 1) + GAP  # even-sized slots keep every grid at even offsets
    slot_w = cols + (cols & 1) + GAP
    total = int((slot_h[present] * slot_w[present]).sum())
    natural = max(int(slot_w.max(initial=2)), int(np.ceil(np.sqrt(max(total, 1)) * 1.1 / 2)) * 2)
    top = np.zeros(len(shapes), dtype=np.int64)
    left = np.zeros(len(shapes), dtype=np.int64)
    y = x = shelf = 0
    for g in present[np.argsort(-rows[present], kind="stable")]:  # tallest first: tight shelves
        if x + slot_w[g] > natural:
            y, x, shelf = y + shelf, 0, 0
        top[g], left[g] = y, x
        x += slot_w[g]
        shelf = max(shelf, int(slot_h[g]))
    dump_row = y + shelf  # even, and GAP rows below the last shelf's grids
    height, width = _even(size_class(dump_row + 2)), _even(size_class(natural))
    # one entry per real cell: its grid, (r, c) inside it, source and canvas positions
    area = rows * cols
    grid = np.repeat(np.arange(len(shapes)), area)
    start = np.concatenate([[0], np.cumsum(area)])[:-1]
    k = np.arange(len(grid)) - start[grid]
    r, c = k // cols[grid], k % cols[grid]
    h_pad, w_pad = padded_hw
    source = grid * (h_pad * w_pad) + r * w_pad + c
    position = (top[grid] + r) * width + left[grid] + c
    region = (r * regions // rows[grid]) * regions + (c * regions // cols[grid])
    half = np.flatnonzero((r % 2 == 0) & (c % 2 == 0))
    half_position = ((top[grid] + r) // 2 * (width // 2) + (left[grid] + c) // 2)[half]
    # pad to the size classes with dummy cells of grid N, all on the dump cell (dump_row, 0)
    m, m2 = len(grid), len(half)
    extra, extra2 = size_class(m + 1) - m, size_class(m2 + 1) - m2
    pad = lambda a, n, v: np.concatenate([a, np.full(n, v, dtype=np.int64)])  # noqa: E731
    grid, source, region = pad(grid, extra, len(shapes)), pad(source, extra, 0), pad(region, extra, 0)
    position = pad(position, extra, dump_row * width)
    half, half_position = pad(half, extra2, m), pad(half_position, extra2, dump_row // 2 * (width // 2))
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device)  # noqa: E731
    return Canvas(height, width, len(shapes), t(source), t(position), t(grid), t(region), t(half), t(half_position))


class GridEncoder(nn.Module):
    """(N, H, W) colours + (N, 2) shapes -> (N, out_dim) grid codes.

    Full resolution only for the stem (1-cell patterns: noise pixels, 2x2 blocks, edges);
    the deeper layers run at half resolution after a 2x2 stride-2 conv. Grids are packed on
    one canvas (see :class:`Canvas`): small convs on CPU are memory-bound, so the work has to
    scale with the real cells, not the padding.
    """

    def __init__(self, channels: int, depth: int, regions: int):
        super().__init__()
        self.regions = regions
        self.stem_channels = stem = max(8, channels // 2)
        self.stem = nn.Conv2d(N_COLOURS + 1, stem, 3, padding=1)
        self.down = nn.Conv2d(stem, channels, 2, stride=2)
        self.blocks = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in range(depth - 1))
        # per region: colour histogram (11) + stem features + half-res features; global maxima; size
        self.out_dim = regions * regions * (N_COLOURS + 1 + stem + channels) + stem + channels + 2

    def _pool(self, feats: torch.Tensor, grid: torch.Tensor, region: torch.Tensor, n: int) -> torch.Tensor:
        """Mean of (M, C) cell features over each grid's regions: (n, R*R*C)."""
        rr = self.regions * self.regions
        slot = grid * rr + region
        sums = feats.new_zeros(((n + 1) * rr, feats.shape[1])).index_add_(0, slot, feats)[: n * rr]
        counts = feats.new_zeros((n + 1) * rr).index_add_(0, slot, torch.ones_like(slot, dtype=feats.dtype))[: n * rr]
        return (sums / counts.clamp(min=1.0)[:, None]).view(n, rr * feats.shape[1])

    @staticmethod
    def _max(feats: torch.Tensor, grid: torch.Tensor, n: int) -> torch.Tensor:
        """Max of (M, C) cell features per grid: (n, C) (0 for absent grids)."""
        out = feats.new_zeros((n + 1, feats.shape[1]))
        return out.scatter_reduce(0, grid[:, None].expand_as(feats), feats, reduce="amax", include_self=False)[:n]

    def forward(self, grids: torch.Tensor, shapes: torch.Tensor) -> torch.Tensor:
        n, height, width = grids.shape
        cv = pack_canvas(shapes.cpu().numpy(), (height, width), self.regions, grids.device)
        colour = grids.reshape(-1)[cv.source].long()  # (M,)
        # (1, 11, Hc, Wc) one-hot colours + "inside a grid" channel; zero in gaps
        x0 = cv.one_hot(N_COLOURS + 1, [colour, torch.full_like(colour, N_COLOURS)])
        mask = x0[:, N_COLOURS:]  # (1, 1, Hc, Wc)
        x1 = F.gelu(self.stem(x0)) * mask
        half_mask = F.max_pool2d(mask, 2)
        x2 = F.gelu(self.down(x1)) * half_mask
        for conv in self.blocks:
            x2 = (x2 + F.gelu(conv(x2))) * half_mask  # residual, re-masked
        full = torch.cat([cells(x0, cv.position), cells(x1, cv.position)], dim=1)  # (M, 11 + S)
        halves = cells(x2, cv.half_position)  # (M2, C)
        half_grid, half_region = cv.grid[cv.half], cv.region[cv.half]
        size = shapes.float() / MAX_SIDE
        return torch.cat([
            self._pool(full, cv.grid, cv.region, n),
            self._pool(halves, half_grid, half_region, n),
            self._max(full[:, N_COLOURS + 1 :], cv.grid, n),
            self._max(halves, half_grid, n),
            size,
        ], dim=1)


class ChangeEncoder(nn.Module):
    """Same-shape pairs, cell by cell. Two views of what changed:

    - a 3x3 conv over the stacked one-hot input and output (20 channels) and a pointwise
      layer, mean- and max-pooled per pair (2 * channels): what changed in each cell's
      neighbourhood (isolated cells removed, interiors cleared, holes filled);
    - the 10x10 colour-transition histogram (the share of cells going from colour a to
      colour b) and a "same shape" flag (101): recolouring, gravity and noise removal are
      made of these.

    Pairs whose grids differ in shape (or are absent) get zeros.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.conv = nn.Conv2d(2 * N_COLOURS, channels, 3, padding=1)
        self.mix = nn.Conv2d(channels, channels, 1)  # pointwise: applied to the gathered cells only

    def forward(self, grids: torch.Tensor, shapes: torch.Tensor, same: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """grids (N, 2, H, W), shapes (N, 2) of the input, same (N,) bool
        -> (transitions (N, 101), code (N, 2C))."""
        n, _, height, width = grids.shape
        code = grids.new_zeros((n, 2 * self.channels), dtype=torch.float32)
        transitions = grids.new_zeros((n, N_COLOURS * N_COLOURS + 1), dtype=torch.float32)
        idx = torch.nonzero(same).squeeze(1)
        if len(idx) == 0:
            return transitions, code
        cv = pack_canvas(shapes[idx].cpu().numpy(), (height, width), 1, grids.device)
        both = grids[idx]  # (n', 2, H, W)
        before = both[:, 0].reshape(-1)[cv.source].long()  # (M,) colours of each cell
        after = both[:, 1].reshape(-1)[cv.source].long()
        n_same = len(idx)
        counts = torch.bincount(cv.grid, minlength=n_same + 1)[:n_same].clamp(min=1).float()  # (n',) cells per pair
        moves = torch.bincount(cv.grid * N_COLOURS**2 + before * N_COLOURS + after,
                               minlength=(n_same + 1) * N_COLOURS**2)[: n_same * N_COLOURS**2]
        shares = moves.view(len(idx), N_COLOURS**2).float() / counts[:, None]
        transitions = transitions.index_copy(0, idx, torch.cat([shares, torch.ones_like(counts)[:, None]], dim=1))

        x = cv.one_hot(2 * N_COLOURS, [before, N_COLOURS + after])  # (1, 20, Hc, Wc)
        y = cells(F.gelu(self.conv(x)), cv.position)  # (M, C)
        y = F.gelu(F.linear(y, self.mix.weight.flatten(1), self.mix.bias))
        mean = y.new_zeros((n_same + 1, self.channels)).index_add_(0, cv.grid, y)[:n_same] / counts[:, None]
        top = GridEncoder._max(y, cv.grid, len(idx))
        return transitions, code.index_copy(0, idx, torch.cat([mean, top], dim=1).to(code.dtype))


def dihedral_region_permutations(r: int) -> torch.Tensor:
    """(8, R*R) long: for each of the 8 symmetries of the square, the region of the input
    layout that lands on each region of the output layout."""
    i, j = torch.meshgrid(torch.arange(r), torch.arange(r), indexing="ij")
    e = r - 1
    maps = [(i, j), (j, e - i), (e - i, e - j), (e - j, i), (i, e - j), (e - i, j), (j, i), (e - j, e - i)]
    return torch.stack([(a * r + b).flatten() for a, b in maps])


class GuideNet(nn.Module):
    """forward(grids (B,K,2,H,W) uint8, shapes (B,K,2,2), pair_mask (B,K) bool, relations (B,K,R)) -> (B, P) logits."""

    def __init__(self, n_primitives: int, channels: int = 48, depth: int = 3, hidden: int = 256,
                 regions: int = 3, dropout: float = 0.1):
        super().__init__()
        self.encoder = GridEncoder(channels, depth, regions)
        self.changes = ChangeEncoder(channels)
        d = self.encoder.out_dim
        self.register_buffer("region_perms", dihedral_region_permutations(regions), persistent=False)
        pair_in = 3 * d + 4 + 16 + N_COLOURS * N_COLOURS + 1 + 2 * channels + N_RELATIONS
        self.pair = nn.Sequential(
            nn.LayerNorm(pair_in),  # the pair features mix counts, shares and sizes: put them on one scale
            nn.Linear(pair_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.GELU(),
        )
        self.head = nn.Sequential(
            nn.Linear(2 * hidden, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_primitives),
        )

    def _layout_match(self, c_in: torch.Tensor, c_out: torch.Tensor) -> torch.Tensor:
        """(B, K, 16): how far the output's region layout is from the input's under each of
        the 8 symmetries of the square, for colours and for stem features. An explicit,
        cheap comparison the pair MLP would otherwise have to learn from many examples."""
        rr = self.encoder.regions ** 2
        full = N_COLOURS + 1 + self.encoder.stem_channels
        a = c_in[..., : rr * full].unflatten(-1, (rr, full))  # (B, K, R*R, 11 + S), region-major
        z = c_out[..., : rr * full].unflatten(-1, (rr, full))
        moved = a[..., self.region_perms, :]  # (B, K, 8, R*R, 11 + S)
        diff = (moved - z.unsqueeze(-3)).abs()
        colours = diff[..., : N_COLOURS + 1].mean(dim=(-1, -2))  # (B, K, 8)
        features = diff[..., N_COLOURS + 1 :].mean(dim=(-1, -2))
        return torch.cat([colours, features], dim=-1)

    def _changes(self, grids: torch.Tensor, shapes: torch.Tensor) -> torch.Tensor:
        """(B, K, 101 + 2C): colour transitions and change code of same-shape pairs."""
        b, k, _, height, width = grids.shape
        same = (shapes[:, :, 0] == shapes[:, :, 1]).all(-1) & (shapes[:, :, 0, 0] > 0)  # (B, K)
        transitions, code = self.changes(
            grids.reshape(b * k, 2, height, width), shapes[:, :, 0].reshape(b * k, 2), same.reshape(-1)
        )
        return torch.cat([transitions, code], dim=-1).view(b, k, -1)

    def forward(self, grids: torch.Tensor, shapes: torch.Tensor, pair_mask: torch.Tensor,
                relations: torch.Tensor) -> torch.Tensor:
        """relations (B, K, N_RELATIONS): the exact facts of tasks.arc_guide.relations per pair."""
        b, k, _, height, width = grids.shape
        codes = self.encoder(grids.reshape(b * k * 2, height, width), shapes.reshape(b * k * 2, 2))
        codes = codes.view(b, k, 2, -1)
        c_in, c_out = codes[:, :, 0], codes[:, :, 1]
        sizes = shapes.float().clamp(min=1.0)  # (B, K, 2, 2)
        log_ratio = torch.log(sizes[:, :, 1] / sizes[:, :, 0])  # (B, K, 2): output / input sides
        shape_feats = torch.cat([log_ratio, (sizes[:, :, 1] - sizes[:, :, 0]) / MAX_SIDE], dim=-1)
        pairs = self.pair(torch.cat([
            c_in, c_out, c_out - c_in, shape_feats, self._layout_match(c_in, c_out), self._changes(grids, shapes),
            relations.to(c_in.dtype),
        ], dim=-1))  # (B, K, hidden)
        m = pair_mask.unsqueeze(-1).to(pairs.dtype)
        mean = (pairs * m).sum(1) / m.sum(1).clamp(min=1.0)
        top = pairs.masked_fill(~pair_mask.unsqueeze(-1), torch.finfo(pairs.dtype).min).amax(1)
        return self.head(torch.cat([mean, top], dim=-1))
