"""A zoo of known-wrong backward passes, each the mistake a student makes, as edits of the solution.

Each entry: the exercise, the edits (``(old, new)`` pairs applied to the reference file, each of
which must be found), and a piece of the hint the grader must print for it. The grader loads only
the exercise's own file, so a student copy for one entry is that one file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

import minires
from minires.exercises.tasks import TASKS

MY_COL2IM = '''

def my_col2im(cols, x_shape, kernel, stride, padding, dilation, out):
    """col2im with '=' where '+=' belongs: overlapping windows overwrite each other."""
    import numpy
    from minires.functional.im2col import padded_shape, window_slices
    N, C, H, W = x_shape
    oh, ow = cols.shape[-2:]
    Hp, Wp = padded_shape(x_shape, kernel, stride, padding, dilation, (oh, ow))
    dx_pad = numpy.zeros((C, N, Hp, Wp), dtype=cols.dtype)
    for i, j, window in window_slices(kernel, stride, dilation, (oh, ow)):
        dx_pad[window] = cols[:, i, j]
    dx = dx_pad[:, :, padding[0]:padding[0] + H, padding[1]:padding[1] + W]
    out[...] = dx.transpose(1, 0, 2, 3)
    return out
'''

ALL_TIES = '''        windows = {i * self.kernel[1] + j: window for i, j, window in
                   window_slices(self.kernel, self.stride, self.dilation, (oh, ow))}
        Hp, Wp = padded_shape(self.x_shape, self.kernel, self.stride, self.padding, self.dilation, (oh, ow))
        x_pad = xp.full((N * C, Hp, Wp), -float("inf"))
        ph, pw = self.padding
        x_pad[:, ph:ph + self.x_shape[2], pw:pw + self.x_shape[3]] = self.x4.reshape(N * C, *self.x_shape[2:])

        def slab_grad(block: slice, k: int) -> Array:                      # every element equal to the max
            return douts[block] * (x_pad[block][windows[k]] == self.best[block])
'''

ZOO: Dict[str, Tuple[str, List[Tuple[str, str]], str]] = {
    "conv2d without the group loop": ("conv2d", [
        ("dcols = matmul(w_g.transpose(0, 2, 1), dout_g,", "dcols = matmul(w_g[:1].transpose(0, 2, 1), dout_g,"),
        ("matmul(w_flip, dcols", "matmul(w_flip[:1], dcols")], "fails only with groups > 1"),
    "conv2d with dW transposed": ("conv2d", [
        ("matmul(cols_g, dout_g.transpose(0, 2, 1), dw_chunks[k], xp)",
         "matmul(dout_g, cols_g.transpose(0, 2, 1), dw_chunks[k].reshape(G, Og, K), xp)"),
        ("matmul(dout_g, cols_g.transpose(0, 2, 1), dw_chunks[k], xp)  # (G, Og, K)",
         "matmul(cols_g, dout_g.transpose(0, 2, 1), dw_chunks[k].reshape(G, K, Og), xp)")],
        "weight: the right numbers in the wrong places: a transpose"),
    "conv2d with col2im assigning": ("conv2d", [
        ("                col2im(dcols,", "                my_col2im(dcols,"), ("__all__ = [", MY_COL2IM + "\n\n__all__ = [")],
        "wrong only where windows overlap: a missing accumulation"),
    "conv2d forgetting dW": ("conv2d", [("return dx, dw, db", "return dx, None, db")],
                             "weight: no gradient came back"),
    "max_pool2d to the last maximum": ("max_pool2d", [("hit = (candidate > best)", "hit = (candidate >= best)")],
                                       "wrong only at ties, sent to another of the tied maxima"),
    "max_pool2d to every tied maximum": ("max_pool2d", [
        ("        self.winner, self.x_shape, self.unbatched = winner, x4.shape, x.ndim == 3\n",
         "        self.winner, self.x_shape, self.unbatched = winner, x4.shape, x.ndim == 3\n"
         "        self.x4, self.best = x4, out\n"),
        ("        def slab_grad(block: slice, k: int) -> Array:" + " " * 22
         + "# (b, oH, oW): dout where k won, else 0\n"
         + "            if finite:\n"
         + "                return douts[block] * (self.winner[block] == k)\n"
         + "            return xp.where(self.winner[block] == k, douts[block], 0)"
         + "      # not dout * mask: inf * 0 is NaN\n", ALL_TIES)],
        "wrong only at ties, sent to every tied maximum"),
    "avg_pool2d dividing by kH*kW": ("avg_pool2d", [
        ("dout4 / self.divisor", "dout4 / (self.kernel[0] * self.kernel[1])")],
        "fails only with windows with fewer than kH*kW counted elements"),
    "batch_norm without the mean term": ("batch_norm", [("d += _per_pixel(dbias[c] / m, pixels)", "d += 0")],
                                         "a missing (or extra) mean term"),
    "batch_norm with the unbiased variance": ("batch_norm", [
        ("scale = self.gamma * self.inv_std ",
         "channel = (1, -1) + (1,) * (self.x.ndim - 2)\n"
         "        others = (0,) + tuple(range(2, self.x.ndim))\n"
         "        inv_std = 1 / xp.sqrt(xp.square(self.x - self.mean.reshape(channel)).sum(axis=others) / (m - 1) "
         "+ 1e-5) if self.training else self.inv_std\n        scale = self.gamma * inv_std "),
        ("xhat *= _per_pixel(self.inv_std[c], pixels)", "xhat *= _per_pixel(inv_std[c], pixels)")],
        "the unbiased variance"),
    "relu returning zeros": ("relu", [("return (dout * self.mask,)", "return (dout * 0,)")],
                             "the gradient is all zeros"),
    "relu with ReLU'(0) = 1": ("relu", [("xp.greater(xs, 0, out=mask_flat", "xp.greater_equal(xs, 0, out=mask_flat")],
                               "ReLU'(0) = 0"),
    "cross_entropy without the 1/N of the mean": ("cross_entropy", [
        ("dloss = _dloss(dout, self.reduction, self.total_weight, self.loss_shape)",
         "dloss = _dloss(dout, 'sum' if self.reduction == 'mean' else self.reduction, self.total_weight, "
         "self.loss_shape)")],
        "the 1/M of the mean"),
    "linear with the bias gradient not summed over the batch": ("linear", [
        ("db = dout2.sum(axis=0) if", "db = dout2 if")], "db of shape (out,)"),
}


def write_student_file(root: Path, exercise: str, edits: List[Tuple[str, str]]) -> Path:
    """A student copy at ``root`` holding only the exercise's file, with ``edits`` applied."""
    task = TASKS[exercise]
    source = (Path(minires.__file__).parent / task.path).read_text()
    for old, new in edits:
        assert old in source, f"the zoo edit {old!r} no longer matches {task.path}; update the zoo"
        source = source.replace(old, new)
    path = root / "minires" / task.path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    return root
