"""Branching vessel trees: grown as polylines for a whole batch at once, then rasterised as
anti-aliased capsules (distance to each segment) into images and masks."""

from __future__ import annotations

import torch
from torch import Tensor

# Per tip and step, the growth table holds 5 uniforms: heading jitter, branch test, branch
# side and angle, child/parent radius ratio, child curvature.
TABLE_FIELDS = 5


def grow(starts: Tensor, table: Tensor, fov_radius: Tensor, step: float, r_min: float,
         p_branch: float = 0.13, taper: float = 0.985, jitter: float = 0.25, straighten: float = 0.94) -> Tensor:
    """Grow vessel trees from trunk starts, every sample's tips advancing together.

    Each tip draws one straight segment per step, turns by its curvature plus jitter (the
    curvature decays by `straighten` per step, so arches open out), tapers, and may spawn a
    child branch (Murray's law shares the radius: r^3 = r_parent^3 + r_child^3).
    A tip dies below `r_min` or outside the field of view. Tip ``j`` of sample ``b`` reads its
    random numbers from ``table[b, j]``, and children take the sample's next free slots in
    order, so a sample's tree depends only on its own table (not on the rest of the batch).
    Positions are tracked in float64 so that the same tree grows whatever the batch.

    Args:
        starts: (N, K, 5) trunks ``[x, y, heading, radius, curvature]`` (heading in radians,
            curvature in radians per step), normalised coordinates.
        table: (N, S, T, 5) uniforms in [0, 1): S tip slots (>= K), T steps.
        fov_radius: (N,) radius of the circular field of view centred at the origin.
        step: segment length; r_min: smallest radius drawn.

    Returns:
        (M, 6) float64 segments ``[sample, x0, y0, x1, y1, radius]``.
    """
    n, k = starts.shape[:2]
    slots, steps = table.shape[1:3]
    b = torch.arange(n).repeat_interleave(k)
    key = b * slots + torch.arange(k).repeat(n)  # sample * slots + slot: the tip's table row
    x, y, heading, r, curv = starts.reshape(-1, 5).double().unbind(1)
    fov2 = fov_radius.double() ** 2
    next_slot = torch.full((n,), k, dtype=torch.long)
    table = table.double().permute(2, 0, 1, 3).reshape(steps, n * slots, TABLE_FIELDS)  # step-major rows
    segments = []
    for t in range(steps):
        if b.numel() == 0:
            break
        u = table[t].index_select(0, key)
        nx, ny = torch.add(x, torch.cos(heading), alpha=step), torch.add(y, torch.sin(heading), alpha=step)
        segments.append(torch.stack([b.double(), x, y, nx, ny, r], dim=1))
        heading = heading + curv + (u[:, 0] - 0.5) * jitter
        curv = curv * straighten
        ratio = 0.55 + 0.3 * u[:, 3]
        spawn = (u[:, 1] < p_branch) & (r * ratio >= r_min)
        side_spread = torch.where(u[:, 2] < 0.5, -1.0, 1.0) * (0.45 + 1.4 * (u[:, 2] - 0.5).abs())
        child_r, child_heading = r * ratio, heading + side_spread
        r = torch.where(spawn, r * (1.0 - ratio**3) ** (1.0 / 3.0), r) * taper
        heading = torch.where(spawn, heading - 0.25 * side_spread, heading)

        # Children take their sample's next free slots, in the order of their parents' slots.
        si = spawn.nonzero().squeeze(1)
        si = si[torch.argsort(key[si])]
        bc = b[si]
        counts = torch.bincount(bc, minlength=n)
        rank = torch.arange(si.numel()) - (torch.cumsum(counts, 0) - counts)[bc]
        child_slot = next_slot[bc] + rank
        next_slot += counts
        ok = child_slot < slots
        ci, bc = si[ok], bc[ok]

        alive = (r >= r_min) & (nx * nx + ny * ny < fov2[b])
        b = torch.cat([b[alive], bc])
        key = torch.cat([key[alive], bc * slots + child_slot[ok]])
        x, y = torch.cat([nx[alive], nx[ci]]), torch.cat([ny[alive], ny[ci]])
        heading = torch.cat([heading[alive], child_heading[ci]])
        curv = torch.cat([curv[alive], (u[ci, 4] - 0.5) * 0.08])
        r = torch.cat([r[alive], child_r[ci]])
    if not segments:
        return torch.zeros(0, 6, dtype=torch.float64)
    return torch.cat(segments)


def rasterise(segments: Tensor, values: Tensor, n: int, size: int, chunk_pixels: int = 1 << 20
              ) -> tuple[Tensor, Tensor]:
    """Draw segments as capsules: the per-pixel maximum of their anti-aliased coverage and their mask.

    Each segment is evaluated on its own small square patch of pixels around it (segments are
    grouped by the patch size they need), so the cost grows with the segments' length and
    width, not with the image size. Patches write into a canvas with a margin, cropped at the end.

    Args:
        segments: (M, 6) ``[sample, x0, y0, x1, y1, radius]`` in normalised coordinates.
        values: (M,) value of each segment where it covers a pixel fully (e.g. its contrast), < 2.
        n, size: batch size and image size of the output.

    Returns:
        ``(coverage, mask)``: (n, size, size) float32 max of ``value * clamp(r + 0.5 - d, 0, 1)``
        (d, r in pixels), and bool ``d < max(r, 0.5)`` (every vessel at least one pixel wide).
        Where the mask is set, the coverage is the largest among the segments that set it.
    """
    if segments.numel() == 0:
        return torch.zeros(n, size, size), torch.zeros(n, size, size, dtype=torch.bool)
    scale = size / 2.0
    b = segments[:, 0].long()
    p = (segments[:, 1:5] + 1.0) * scale - 0.5  # pixel-index coordinates x0, y0, x1, y1
    r = (segments[:, 5] * scale).float()
    reach = r.clamp_min(0.5).double() + 1.0
    origin = torch.floor(torch.minimum(p[:, 0:2], p[:, 2:4]) - reach[:, None])
    extent = torch.maximum(p[:, 0:2], p[:, 2:4]) + reach[:, None] - origin
    patch = torch.ceil(extent.amax(dim=1)).long() + 1  # pixels per side each segment needs
    margin = int(patch.max().item())
    side = size + 2 * margin
    out = torch.zeros(n * side * side)
    p = (p - origin.repeat(1, 2)).float()  # segment coordinates relative to its patch
    base = (b * side + origin[:, 1].long() + margin) * side + origin[:, 0].long() + margin
    for size_p in patch.unique().tolist():
        group = (patch == size_p).nonzero().squeeze(1)
        offs = torch.arange(size_p)
        grid = (offs * side).view(-1, 1) + offs  # (P, P) flat offsets of the patch in the canvas
        per_chunk = max(1, chunk_pixels // (size_p * size_p))
        for s in range(0, group.numel(), per_chunk):
            g = group[s:s + per_chunk]
            x0, y0, x1, y1 = (c[:, None] for c in p[g].unbind(1))
            ex, ey = x1 - x0, y1 - y0
            inv_len2 = 1.0 / (ex * ex + ey * ey).clamp_min(1e-12)
            dx, dy = offs - x0, offs - y0  # (m, P) along x and along y
            t = ((dx * ex * inv_len2)[:, None, :] + (dy * ey * inv_len2)[:, :, None]).clamp_(0.0, 1.0)
            qx = torch.addcmul(dx[:, None, :], t, ex[:, :, None], value=-1.0).square_()
            d = torch.addcmul(dy[:, :, None], t, ey[:, :, None], value=-1.0).square_().add_(qx).sqrt_()
            rr = r[g].view(-1, 1, 1)
            # Coverage (< 2) plus 2 where the pixel centre is inside: one amax scatter for both.
            code = torch.sub(rr + 0.5, d).clamp_(0.0, 1.0).mul_(values[g].view(-1, 1, 1))
            code.add_(d < rr.clamp_min(0.5), alpha=2.0)
            index = base[g].view(-1, 1, 1) + grid
            out.scatter_reduce_(0, index.flatten(), code.flatten(), reduce="amax")
    out = out.view(n, side, side)[:, margin:margin + size, margin:margin + size]
    mask = out >= 2.0
    return out - 2.0 * mask.float(), mask
