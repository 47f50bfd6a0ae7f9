"""Find the first layer where a framework's numbers and npcnn's disagree.

A *dump* is a ``.npz`` (or a dict) of layer outputs keyed by layer name, nested layers as
``"outer/inner"`` (``tools/dump_keras.py`` and ``tools/dump_torch.py`` write them). npcnn runs the same
inputs in float64 (the reference: no float32 rounding of its own) and compares layer by layer, in graph
order, so a wrong port, a bad conversion or a quantised layer shows up where it starts, and the error's
growth through the network shows how it spreads.

    result = compare(model, x, "dump.npz", rtol=1e-4, atol=1e-5)
    print(result.table()); result.first_failure -> "block3_conv2" or None

Gradients: a dump may hold ``grad:input``, the gradient of sum(cotangent * model output) with respect to
the input, with the cotangent under ``grad:cotangent`` (ones when absent; note that for a softmax output
the gradient of the plain sum is zero, so dump tools store a random cotangent).
"""
import json
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import InputError

GRADIENT_KEY = "grad:input"
COTANGENT_KEY = "grad:cotangent"


@dataclass
class LayerCheck:
    """One row: a layer's output (or a gradient) compared with the dump."""

    key: str
    shape: tuple
    max_abs: float = float("nan")
    max_rel: float = float("nan")   # max |npcnn - dump| / max |dump|: the error relative to the layer's scale
    float32_rel: float = float("nan")  # the same for npcnn in float32: what float32 rounding alone gives
    passed: bool = False
    growth: float = float("nan")    # max_rel / the previous row's max_rel
    note: str = ""


@dataclass
class VerifyResult:
    rows: list
    missing: list = field(default_factory=list)   # layers of the model absent from the dump
    extra: list = field(default_factory=list)     # dump keys that match no layer
    rtol: float = 1e-4
    atol: float = 1e-5

    @property
    def first_failure(self):
        return next((r.key for r in self.rows if not r.passed), None)

    @property
    def passed(self):
        return all(r.passed for r in self.rows) and bool(self.rows)

    def to_dict(self):
        return {"passed": self.passed, "first_failure": self.first_failure, "rtol": self.rtol, "atol": self.atol,
                "missing": self.missing, "extra": self.extra,
                "layers": [{**asdict(r), "shape": list(r.shape)} for r in self.rows]}

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, default=lambda v: None if v != v else v)

    def table(self, color=False):
        """The comparison as a text table; the first failing layer is marked with '>>'."""
        head = f"   {'layer':<36} {'shape':<20} {'max abs err':>12} {'max rel err':>12} {'f32 rel':>10} {'growth':>8}  result"
        lines = [head, "   " + "-" * (len(head) - 3)]
        first = self.first_failure
        for r in self.rows:
            mark = ">> " if r.key == first else "   "
            verdict = "ok" if r.passed else "FAIL"
            if color and not r.passed:
                verdict = f"\x1b[31m{verdict}\x1b[0m"
            growth = "" if r.growth != r.growth else f"{r.growth:8.1f}x"
            lines.append(f"{mark}{r.key:<36.36} {str(r.shape):<20.20} {r.max_abs:12.3e} {r.max_rel:12.3e} "
                         f"{r.float32_rel:10.1e} {growth:>8}  {verdict}{'  ' + r.note if r.note else ''}")
        if self.missing:
            lines.append(f"not in the dump ({len(self.missing)}): {', '.join(self.missing[:20])}"
                         + (" ..." if len(self.missing) > 20 else ""))
        if self.extra:
            lines.append(f"in the dump but not in the model ({len(self.extra)}): {', '.join(self.extra[:20])}")
        lines.append(f"first layer past tolerance (rtol={self.rtol:g}, atol={self.atol:g}): {first}"
                     if first else f"all {len(self.rows)} compared outputs within rtol={self.rtol:g}, atol={self.atol:g}")
        return "\n".join(lines)


def load_dump(reference):
    """A dump path (.npz) or mapping -> {key: ndarray}. Pickled objects are never loaded."""
    if isinstance(reference, dict):
        return {str(k): np.asarray(v) for k, v in reference.items()}
    try:
        with np.load(reference, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as e:
        raise InputError(f"{reference}: not a readable .npz dump ({e})") from None


def _errors(ours, ref):
    diff = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    max_abs = float(diff.max()) if diff.size else 0.0
    return max_abs, (max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf")))


def compare(model, x, reference, rtol=1e-4, atol=1e-5, gradients=False, float32=True):
    """Compare every layer output of ``model`` on ``x`` with ``reference`` (see module docstring).

    x: the input array(s) the dump was made from. A layer passes when every element satisfies
    |npcnn - dump| <= atol + rtol * |dump| (numpy.allclose's rule). Returns a :class:`VerifyResult`.
    Runs in float64 (and float32 for the extra column); the model's own dtype is restored afterwards.
    """
    dump = load_dump(reference)
    keys = model.layer_keys()
    wanted = [k for k in keys if k in dump]
    original = model.dtype
    try:
        model.astype("float64")
        ours = model.activations(x, layers=wanted) if wanted else {}
        cot = dump.get(COTANGENT_KEY)
        grad64 = model.input_gradient(x, cotangent=cot) if gradients and GRADIENT_KEY in dump else None
        if float32:
            model.astype("float32")
            ours32 = model.activations(x, layers=wanted) if wanted else {}
            grad32 = model.input_gradient(x, cotangent=cot) if grad64 is not None else None
        else:
            ours32, grad32 = {}, None
    finally:
        model.astype(original)
    rows = [_check(k, ours[k], dump[k], ours32.get(k), rtol, atol) for k in wanted]
    if grad64 is not None:
        rows.append(_check(GRADIENT_KEY, np.asarray(grad64), dump[GRADIENT_KEY], grad32, rtol, atol))
    previous = None
    for r in rows:
        if previous and previous > 0 and r.max_rel == r.max_rel:
            r.growth = r.max_rel / previous
        previous = r.max_rel if r.max_rel == r.max_rel else previous
    extra = [k for k in dump if k not in keys and k not in (GRADIENT_KEY, COTANGENT_KEY)]
    return VerifyResult(rows, missing=[k for k in keys if k not in dump], extra=extra, rtol=rtol, atol=atol)


def _check(key, ours, ref, ours32, rtol, atol):
    ours = np.asarray(ours)
    row = LayerCheck(key, tuple(ours.shape))
    if ours.shape != ref.shape:
        row.note = f"shape differs: npcnn {ours.shape}, dump {ref.shape}"
        return row
    if not np.isfinite(ref).all():
        row.note = "the dump holds NaN or inf"
        return row
    row.max_abs, row.max_rel = _errors(ours, ref)
    if ours32 is not None:
        row.float32_rel = _errors(np.asarray(ours32), ref)[1]
    row.passed = bool(np.all(np.abs(ours - ref) <= atol + rtol * np.abs(ref)))
    return row
