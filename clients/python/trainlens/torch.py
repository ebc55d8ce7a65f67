"""PyTorch instrumentation: the signals trainlens diagnoses, from hooks.

    import trainlens, trainlens.torch
    run = trainlens.init(project="mnist", config={"lr": 0.1})
    trainlens.torch.watch(run, model, optimizer=opt, loss_fn=loss_fn)
    for step, (x, y) in enumerate(loader):
        ...; run.log({"train/loss": loss.item()}, step=step)

:func:`watch` logs, every ``every`` steps, under the names the diagnostics
read (``<layer>`` is the module's name from ``named_modules()``; a module
with several weight matrices, such as an LSTM's ``weight_ih_l0`` and
``weight_hh_l0`` or attention's ``in_proj_weight``, gets one series per
weight under ``<module>.<parameter>``; biases are left out):

* ``grad_norm/<layer>``, ``weight_norm/<layer>``: L2 norms of the weight's
  gradient (read as backward accumulates it) and of the weight;
* ``update_ratio/<layer>``: ‖Δw‖ / ‖w‖ across the optimizer step that follows
  (the weights are copied only on the steps that are measured);
* ``act_mean/<layer>``, ``act_std/<layer>``: the layer's output, after its
  activation when that is a module (``nn.ReLU``, ``nn.Tanh``, …, also one
  instance reused after several layers); ``dead_frac/<layer>`` (ReLU family:
  share of units, i.e. features or conv channels, that are 0 for the whole
  batch) and ``sat_frac/<layer>`` (sigmoid: outputs below 0.01 or above 0.99;
  tanh: |output| above 0.99);
* every ``histograms_every`` steps, 30-bin histograms ``weights/<layer>``,
  ``grads/<layer>``, ``activations/<layer>``;
* with ``feature_maps=["conv1", ...]`` (module names), every
  ``feature_maps_every`` steps, the image record ``features/<name>``: the
  module's output for the first sample of the batch, its first
  ``feature_map_channels`` channels;
* with ``weights=["fc1", ...]``, every ``weights_every`` steps, the tensor
  record ``weights/<name>`` (a bounded block of a large weight, see
  :func:`trainlens.records.tensor`).

Feature maps and weight tensors are taken on measured steps only, so they
come on the steps that are multiples of both ``every`` and their own period
(give a multiple of ``every``).

NaN and infinities are kept: a NaN gradient norm is logged as NaN, and
histograms count non-finite values apart.

**Steps.** The step advances with every forward pass of the model in
training mode, one per batch: in the usual loop (``zero_grad``, forward,
backward, ``step``) it equals the loop's batch index, so pass the same number
to ``run.log(..., step=...)``. With gradient accumulation over k micro-batches
the step advances k per optimizer step; a measured gradient is then the
partial sum after that micro-batch, and the update ratio spans whatever
optimizer step follows — so a forgotten ``zero_grad`` shows as growing
gradient norms, and a forgotten ``optimizer.step()`` as an update ratio of 0.
Forward passes in eval mode are neither counted nor measured.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from . import records

__all__ = ["watch", "Watch", "model_record", "dataset_summary"]

#: Activation modules whose output is attributed to the weight layer before.
_RELU_FAMILY = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU)
_ACTIVATIONS = _RELU_FAMILY + (nn.Sigmoid, nn.Tanh, nn.GELU, nn.SiLU, nn.Mish, nn.Softplus,
                               nn.Hardtanh, nn.Hardsigmoid, nn.Hardswish, nn.Softmax,
                               nn.LogSoftmax)

#: Bins of the histograms (the record format's fixtures use 30).
HISTOGRAM_BINS = 30
#: Up to this many bytes of watched weights, the snapshot taken before a
#: measured step is copied into storage kept from one measured step to the
#: next: a fresh copy of every weight at each measured step costs more in
#: allocation (and page faults) than the copy itself, which weighs on small
#: models whose steps are short. Beyond it the snapshot is freed after use,
#: so that a large model does not hold a second copy of its weights.
SNAPSHOT_BUFFER_BYTES = 64 << 20
#: A sigmoid output below this or above 1 - this is saturated.
SIGMOID_SATURATED = 0.01
#: A tanh output with a magnitude above this is saturated.
TANH_SATURATED = 0.99


def _activation_name(m: nn.Module) -> str:
    names = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.LeakyReLU: "leaky_relu", nn.PReLU: "prelu",
             nn.RReLU: "rrelu", nn.ELU: "elu", nn.SELU: "selu", nn.CELU: "celu",
             nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.GELU: "gelu", nn.SiLU: "silu",
             nn.Mish: "mish", nn.Softplus: "softplus", nn.Hardtanh: "hardtanh",
             nn.Hardsigmoid: "hardsigmoid", nn.Hardswish: "hardswish", nn.Softmax: "softmax",
             nn.LogSoftmax: "log_softmax"}
    return names.get(type(m), type(m).__name__.lower())


class _Layer:
    """One weight parameter that is watched."""

    __slots__ = ("name", "module_name", "param", "grad_norm", "grad_hist", "before", "buffer",
                 "keys")

    def __init__(self, name: str, module_name: str, param: nn.Parameter) -> None:
        self.name = name
        self.module_name = module_name
        self.param = param
        self.grad_norm: Optional[torch.Tensor] = None
        self.grad_hist: Optional[torch.Tensor] = None
        self.before: Optional[torch.Tensor] = None
        # The snapshot's storage, kept between measured steps (small models).
        self.buffer: Optional[torch.Tensor] = None
        self.keys = (f"weight_norm/{name}", f"update_ratio/{name}", f"grad_norm/{name}",
                     f"weights/{name}", f"grads/{name}")


def _layers(model: nn.Module) -> Tuple[List[_Layer], Dict[str, nn.Module]]:
    layers: List[_Layer] = []
    owners: Dict[str, nn.Module] = {}
    for module_name, module in model.named_modules():
        weights = [(n, p) for n, p in module.named_parameters(recurse=False)
                   if "bias" not in n and p.dim() >= 1]
        if not weights:
            continue
        owners[module_name] = module
        for pname, p in weights:
            if len(weights) == 1 and pname == "weight":
                name = module_name or pname
            else:
                name = f"{module_name}.{pname}" if module_name else pname
            layers.append(_Layer(name, module_name, p))
    return layers, owners


def _histogram(t: torch.Tensor) -> Tuple[List[float], List[int], int]:
    """30 equal bins over the finite values, and how many were not finite."""
    flat = t.detach().reshape(-1).float()
    if flat.numel() == 0:
        return [], [], 0
    # The common case first: when the extremes are finite, every value is
    # (a NaN makes both NaN, an infinity is an extreme), and the mask and
    # the copy of the finite values are not needed.
    lo_t, hi_t = torch.aminmax(flat)
    lo, hi = float(lo_t), float(hi_t)
    if math.isfinite(lo) and math.isfinite(hi):
        finite, nonfinite = flat, 0
    else:
        finite_mask = torch.isfinite(flat)
        nonfinite = int(flat.numel() - int(finite_mask.sum()))
        finite = flat[finite_mask]
        if finite.numel() == 0:
            return [], [], nonfinite
        lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        hi = lo + max(abs(lo), 1.0) * 1e-6
    counts = torch.histc(finite, bins=HISTOGRAM_BINS, min=lo, max=hi)
    width = (hi - lo) / HISTOGRAM_BINS
    edges = [lo + i * width for i in range(HISTOGRAM_BINS)] + [hi]
    return edges, [int(c) for c in counts.tolist()], nonfinite


def _snapshot(layers: List[_Layer], keep: bool) -> None:
    """Sets each layer's ``before`` to a copy of its weight as it is now:
    into the kept buffers when ``keep`` and they fit (one fused copy),
    fresh copies otherwise."""
    weights = [layer.param.detach() for layer in layers]
    fits = keep and all(
        layer.buffer is not None and layer.buffer.shape == w.shape and layer.buffer.dtype == w.dtype
        and layer.buffer.device == w.device for layer, w in zip(layers, weights))
    copy_ = getattr(torch, "_foreach_copy_", None)
    if fits and copy_ is not None:
        buffers = [layer.buffer for layer in layers]
        copy_(buffers, weights)
        for layer, b in zip(layers, buffers):
            layer.before = b
        return
    for layer, w in zip(layers, weights):
        b = layer.buffer.copy_(w) if fits else w.clone()
        layer.before = b
        layer.buffer = b if keep else None


def _norms_and_updates(befores: List[torch.Tensor], afters: List[torch.Tensor], in_place: bool
                       ) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """‖w‖ of each weight before the step and ‖Δw‖ across it, in float32:
    a handful of fused (foreach) kernels when every weight is float32, one
    pair of norms a weight otherwise. ``in_place`` lets the difference
    overwrite ``befores`` instead of allocating a copy of every weight."""
    foreach_norm = getattr(torch, "_foreach_norm", None)
    foreach_sub = getattr(torch, "_foreach_sub", None)
    foreach_sub_ = getattr(torch, "_foreach_sub_", None)
    if (befores and foreach_norm is not None and foreach_sub is not None and foreach_sub_ is not None
            and all(b.dtype == torch.float32 for b in befores)):
        try:
            norms = list(foreach_norm(befores))
            if in_place:
                foreach_sub_(befores, afters)  # before - after: the same norm
                return norms, list(foreach_norm(befores))
            return norms, list(foreach_norm(foreach_sub(afters, befores)))
        except (RuntimeError, TypeError):
            pass
    return ([torch.linalg.vector_norm(b.float()) for b in befores],
            [torch.linalg.vector_norm((a - b).float()) for a, b in zip(afters, befores)])


class _Scalars:
    """Statistics of one measured step as 0-d tensors, read from the device
    in one transfer; what is left (ratios, fractions of a count) is done on
    the read numbers, which costs no kernel."""

    def __init__(self) -> None:
        self.tensors: List[torch.Tensor] = []
        # (key, index of its tensor, how the value is made of it)
        self.entries: List[Tuple[str, int, Any]] = []

    def _push(self, t: torch.Tensor) -> int:
        self.tensors.append(t)
        return len(self.tensors) - 1

    def add(self, key: str, t: torch.Tensor) -> int:
        i = self._push(t)
        self.entries.append((key, i, None))
        return i

    def add_ratio(self, key: str, t: torch.Tensor, denominator: int) -> None:
        """``t`` over the value at index ``denominator`` (floored at 1e-12)."""
        self.entries.append((key, self._push(t), ("ratio", denominator)))

    def add_fraction(self, key: str, count: torch.Tensor, n: int, alive: bool) -> None:
        """``count`` of ``n`` units, or the rest of them when ``alive``."""
        self.entries.append((key, self._push(count), ("dead" if alive else "of", n)))

    def read(self) -> Dict[str, float]:
        if not self.tensors:
            return {}
        try:
            flat = torch.stack(self.tensors).float().cpu().tolist()
        except RuntimeError:  # a model split across devices
            flat = [float(t.detach().float().cpu()) for t in self.tensors]
        values: Dict[str, float] = {}
        for key, i, how in self.entries:
            v = flat[i]
            if how is not None:
                kind, arg = how
                if kind == "ratio":
                    d = flat[arg]
                    # NaN stays NaN (max() would drop it).
                    v = v / (d if d >= 1e-12 or d != d else 1e-12)
                elif kind == "dead":
                    v = 1.0 - v / arg
                else:
                    v = v / arg
            values[key] = v
        return values


def _first_tensor(out: Any) -> Optional[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out:
        return _first_tensor(out[0])
    return None


def _some(names: Sequence[str], n: int = 12) -> str:
    shown = ", ".join(repr(x) for x in names[:n])
    return shown + (f", … ({len(names)} in all)" if len(names) > n else "")


def _resolve(model: nn.Module, layers: List[_Layer], feature_maps: Optional[Sequence[str]],
             weights: Optional[Sequence[str]]) -> Tuple[Dict[str, nn.Module], Dict[str, Any]]:
    """The modules of ``feature_maps`` and the weights of ``weights`` by name:
    a weight is a module's ``weight`` (by the module's name) or a watched
    weight by its layer name (``lstm.weight_ih_l0``). Unknown names raise a
    ValueError naming them and listing valid ones."""
    modules = dict(model.named_modules())
    for arg, names in (("feature_maps", feature_maps), ("weights", weights)):
        if names is not None and (isinstance(names, str)
                                  or not all(isinstance(n, str) for n in names)):
            raise ValueError(f"{arg} must be a list of module names (str), got {names!r}")
    maps: Dict[str, nn.Module] = {}
    if feature_maps:
        unknown = [n for n in feature_maps if n not in modules]
        if unknown:
            valid = [n for n in modules if n]
            raise ValueError(f"feature_maps: no module named {_some(unknown)} in the model; "
                             f"its modules include {_some(valid)}")
        maps = {n: modules[n] for n in feature_maps}
    found: Dict[str, Any] = {}
    if weights:
        by_layer = {layer.name: layer for layer in layers}
        by_module = {layer.module_name: layer for layer in layers
                     if layer.name == (layer.module_name or "weight")}
        unknown = []
        for n in weights:
            if n in by_layer:
                found[n] = by_layer[n]
            elif n in by_module:
                found[n] = by_module[n]
            elif f"{n}.weight" in by_layer:
                found[n] = by_layer[f"{n}.weight"]
            elif n in modules and isinstance(getattr(modules[n], "weight", None), torch.Tensor):
                found[n] = modules[n]  # a weight that is not a parameter (parametrized)
            else:
                unknown.append(n)
        if unknown:
            raise ValueError(f"weights: no weight named {_some(unknown)} in the model; "
                             f"its weights include {_some(list(by_layer))}")
    return maps, found


def _check_periods(every: int, histograms_every: int, feature_maps_every: int,
                   feature_map_channels: int, weights_every: int) -> None:
    if every < 1 or histograms_every < 1:
        raise ValueError("every and histograms_every must be at least 1")
    for arg, v in (("feature_maps_every", feature_maps_every),
                   ("feature_map_channels", feature_map_channels),
                   ("weights_every", weights_every)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{arg} must be an integer of at least 1, got {v!r}")


class Watch:
    """The hooks :func:`watch` registered; :meth:`unwatch` removes them."""

    def __init__(self, run: Any, model: nn.Module, every: int, histograms_every: int,
                 optimizer: Optional[torch.optim.Optimizer],
                 feature_maps: Optional[Sequence[str]] = None, feature_maps_every: int = 200,
                 feature_map_channels: int = 8, weights: Optional[Sequence[str]] = None,
                 weights_every: int = 200) -> None:
        _check_periods(every, histograms_every, feature_maps_every, feature_map_channels,
                       weights_every)
        self.run = run
        self.model = model
        self.every = every
        self.histograms_every = histograms_every
        self.step = -1  # advanced by the first training forward
        self._layers, owners = _layers(model)
        self._keep_buffers = sum(layer.param.numel() * layer.param.element_size()
                                 for layer in self._layers) <= SNAPSHOT_BUFFER_BYTES
        self._feature_modules, self._weight_sources = _resolve(model, self._layers, feature_maps,
                                                               weights)
        self.feature_maps_every = feature_maps_every
        self.feature_map_channels = feature_map_channels
        self.weights_every = weights_every
        self._features = False  # this measured step takes feature maps
        self._weights = False  # this measured step sends weight tensors
        self._maps: Dict[str, torch.Tensor] = {}
        self._by_module: Dict[str, List[_Layer]] = {}
        for layer in self._layers:
            self._by_module.setdefault(layer.module_name, []).append(layer)
        self._handles: List[Any] = []
        self._measuring = False
        self._hist = False
        # The weight layer whose forward ran last: an activation module's
        # output is that layer's activation.
        self._last_owner: Optional[str] = None
        self._acts: Dict[str, Tuple[torch.Tensor, Optional[nn.Module], bool]] = {}
        self._snapshot_step: Optional[int] = None
        self._conv_like = {n for n, m in owners.items()
                           if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d,
                                             nn.ConvTranspose1d, nn.ConvTranspose2d,
                                             nn.ConvTranspose3d))}

        self._owners = owners
        self._named = list(model.named_modules())
        self._roles: Dict[int, Tuple[Optional[str], bool, Optional[str]]] = {}
        # Always on: the model's forward (the step counter) and the
        # optimizer's step. The per-layer hooks are registered for a measured
        # step only, so that the other steps cost two Python calls.
        self._handles.append(model.register_forward_pre_hook(self._on_model_forward))
        if optimizer is not None:
            self._handles.append(optimizer.register_step_post_hook(self._on_optimizer_step))
        self._transient: List[Any] = []

    def _register_layer_hooks(self) -> None:
        # One global forward hook, which this model's modules are looked up
        # in, costs one registration a measured step instead of one a module
        # (other models' forwards during the measured step return at the
        # lookup).
        roles: Dict[int, Tuple[Optional[str], bool, Optional[str]]] = {}
        for name, module in self._named:
            if name in self._owners:
                roles[id(module)] = (name, False, None)
            elif isinstance(module, _ACTIVATIONS):
                roles[id(module)] = (None, True, None)
        if self._features:
            for name, module in self._feature_modules.items():
                owner, act, _ = roles.get(id(module), (None, False, None))
                roles[id(module)] = (owner, act, name)
        self._roles = roles
        self._transient.append(nn.modules.module.register_module_forward_hook(self._on_forward))
        for layer in self._layers:
            # A frozen weight (requires_grad=False) gets no gradient, and
            # PyTorch refuses a hook on it: its weight norm and update ratio
            # (0) are still logged, its gradient norm is not.
            if layer.param.requires_grad:
                self._transient.append(
                    layer.param.register_post_accumulate_grad_hook(self._grad_hook(layer)))

    def _remove_layer_hooks(self) -> None:
        for h in self._transient:
            h.remove()
        self._transient = []

    # -- hooks ---------------------------------------------------------------
    def _on_model_forward(self, module: nn.Module, args: Any) -> None:
        if not module.training:
            self._measuring = False
            return
        # The optimizer step after the last measured forward has happened
        # (or was forgotten): close that measurement first.
        self._finish_measurement()
        self.step += 1
        self._measuring = self.step % self.every == 0
        self._hist = self.step % self.histograms_every == 0
        self._last_owner = None
        if self._measuring:
            self._features = bool(self._feature_modules) and self.step % self.feature_maps_every == 0
            self._weights = bool(self._weight_sources) and self.step % self.weights_every == 0
            with torch.no_grad():
                _snapshot(self._layers, self._keep_buffers)
            self._snapshot_step = self.step
            self._register_layer_hooks()

    def _on_forward(self, module: nn.Module, args: Any, out: Any) -> None:
        role = self._roles.get(id(module))
        if role is None or not self._measuring:
            return
        owner, act, feature = role
        if owner is not None:
            self._last_owner = owner
            t = _first_tensor(out)
            if t is not None:
                self._acts[owner] = (t.detach(), None, owner in self._conv_like)
        elif act and self._last_owner is not None:
            t = _first_tensor(out)
            if t is not None:
                last = self._last_owner
                self._acts[last] = (t.detach(), module, last in self._conv_like)
        # The first call of the step (a module reused in one forward).
        if feature is not None and feature not in self._maps:
            t = _first_tensor(out)
            if t is not None and t.dim() >= 1:
                with torch.no_grad():
                    # One sample, a few channels: a copy, so that an in-place
                    # activation after the module does not change it.
                    x = t.detach()[0] if t.dim() >= 2 else t.detach()
                    self._maps[feature] = x[:self.feature_map_channels].clone() if x.dim() >= 2 \
                        else x.clone()

    def _grad_hook(self, layer: _Layer):
        def hook(p: torch.Tensor) -> None:
            if not self._measuring or p.grad is None:
                return
            with torch.no_grad():
                layer.grad_norm = torch.linalg.vector_norm(p.grad.detach().float())
                if self._hist:
                    layer.grad_hist = p.grad.detach().clone()
        return hook

    def _on_optimizer_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._finish_measurement()

    # -- measuring -----------------------------------------------------------
    def _finish_measurement(self) -> None:
        """Logs the measured step: norms, the update across the step that
        followed it, activations, histograms."""
        step = self._snapshot_step
        if step is None:
            return
        self._snapshot_step = None
        self._measuring = False
        self._remove_layer_hooks()
        # Every statistic stays a tensor until one read at the end: a key
        # list, the tensors (0-d, or 1-d holding one value per key) and, for
        # the unit fractions, the count that the value is taken from.
        out = _Scalars()
        hists: List[Tuple[str, torch.Tensor]] = []
        with torch.no_grad():
            layers = self._layers
            if layers:
                # The snapshot may become the update itself unless a
                # histogram or a weight tensor still reads it.
                weight_norms, update_norms = _norms_and_updates(
                    [layer.before for layer in layers], [layer.param.detach() for layer in layers],
                    in_place=not (self._hist or self._weights))
                for layer, norm, update in zip(layers, weight_norms, update_norms):
                    out.add_ratio(layer.keys[1], update, out.add(layer.keys[0], norm))
            for layer in layers:
                if layer.grad_norm is not None:
                    out.add(layer.keys[2], layer.grad_norm)
            for layer in layers:
                if self._hist:
                    hists.append((layer.keys[3], layer.before))
                    if layer.grad_hist is not None:
                        hists.append((layer.keys[4], layer.grad_hist))
                layer.grad_norm = None
                layer.grad_hist = None
            for owner, (t, act, conv) in self._acts.items():
                names = [layer.name for layer in self._by_module.get(owner, [])]
                name = owner if owner else (names[0] if names else "model")
                x = t.float()
                mean = x.mean()
                # Two passes (the sample std as the norm of the deviations):
                # stable, and several times faster on CPU than std() or
                # std_mean(), whose kernels took ~20 and ~95 µs on a
                # 64 × 256 batch where this takes ~10.
                n = x.numel()
                std = torch.linalg.vector_norm(x - mean) / math.sqrt(n - 1) if n > 1 \
                    else torch.zeros(())
                out.add(f"act_mean/{name}", mean)
                out.add(f"act_std/{name}", std)
                if act is not None and x.dim() >= 2:
                    if isinstance(act, _RELU_FAMILY):
                        # A unit (a feature, or a conv channel) is dead when
                        # it is 0 for every sample and position: its largest
                        # absolute value is 0 (one reduction costs a seventh
                        # of the `!= 0` mask and its any(); a NaN keeps a
                        # unit alive). ReLU's outputs are never below 0, so
                        # its largest value will do.
                        unit_dim = 1 if conv else x.dim() - 1
                        others = [d for d in range(x.dim()) if d != unit_dim]
                        peak = x if isinstance(act, (nn.ReLU, nn.ReLU6)) else x.abs()
                        units = x.shape[unit_dim]
                        out.add_fraction(f"dead_frac/{name}",
                                         torch.count_nonzero(peak.amax(dim=others)), units, alive=True)
                    elif isinstance(act, nn.Sigmoid):
                        out.add(f"sat_frac/{name}", ((x < SIGMOID_SATURATED)
                                                     | (x > 1 - SIGMOID_SATURATED)).float().mean())
                    elif isinstance(act, nn.Tanh):
                        out.add(f"sat_frac/{name}", (x.abs() > TANH_SATURATED).float().mean())
                if self._hist:
                    hists.append((f"activations/{name}", t))
            self._acts = {}
            values = out.read()
            tensors: List[Tuple[str, torch.Tensor]] = []
            if self._weights:
                for name, src in self._weight_sources.items():
                    # The weights the measured forward saw, as the histograms.
                    w = src.before if isinstance(src, _Layer) else getattr(src, "weight", None)
                    if w is None and isinstance(src, _Layer):
                        w = src.param
                    if isinstance(w, torch.Tensor):
                        tensors.append((f"weights/{name}", w.detach()))
            for layer in self._layers:
                layer.before = None
            maps, self._maps = self._maps, {}
        self.run.log(values, step=step)
        for key, t in hists:
            edges, counts, nonfinite = _histogram(t)
            self.run.log_histogram(key, step=step, edges=edges, counts=counts, nonfinite=nonfinite)
        for name, fmap in maps.items():
            self._log_feature_map(f"features/{name or 'model'}", fmap, step)
        for key, w in tensors:
            self.run.log_tensor(key, w, step)

    def _log_feature_map(self, key: str, x: torch.Tensor, step: int) -> None:
        """Sends one sample's output as [channels, height, width]: a vector
        as one row, [C, L] (1-d convolutions) as C rows, more than three
        dimensions by their first index (the first depth slice of a 3-d
        convolution); strided to fit the image limit."""
        while x.dim() > 3:
            x = x[:, 0]
        if x.dim() == 1:
            x = x.reshape(1, 1, -1)
        elif x.dim() == 2:
            x = x.unsqueeze(1)
        c, h, w = x.shape
        if c * h * w > records.MAX_TENSOR_VALUES:
            s = math.ceil(math.sqrt(c * h * w / records.MAX_TENSOR_VALUES))
            while c * math.ceil(h / s) * math.ceil(w / s) > records.MAX_TENSOR_VALUES:
                s += 1
            x = x[:, ::s, ::s]
        if records.image_layout(x.shape) == "chw":
            self.run.log_image(key, x, step)
        else:
            # [C, H, 3 or 4] would be read as a picture of H×W pixels by
            # log_image's rule; say the layout.
            self.run.log_record(records.image(key, x, step, layout="chw"))

    def unwatch(self) -> None:
        """Removes every hook (and logs a measurement still open)."""
        self._finish_measurement()
        self._remove_layer_hooks()
        for h in self._handles:
            h.remove()
        self._handles = []


def watch(run: Any, model: nn.Module, every: int = 10, histograms_every: int = 200,
          optimizer: Optional[torch.optim.Optimizer] = None, loss_fn: Optional[nn.Module] = None,
          log_model: bool = True, feature_maps: Optional[List[str]] = None,
          feature_maps_every: int = 200, feature_map_channels: int = 8,
          weights: Optional[List[str]] = None, weights_every: int = 200) -> Watch:
    """Instruments ``model`` so that ``run`` gets its gradients, weights,
    updates and activations every ``every`` steps (see the module's doc).

    ``feature_maps``: names of modules (from ``named_modules()``) whose
    output is sent as the image ``features/<name>`` every
    ``feature_maps_every`` steps — the first sample of the batch, at most
    ``feature_map_channels`` channels. ``weights``: names of modules (their
    ``weight``) or of watched weights (``lstm.weight_ih_l0``) sent as the
    tensor ``weights/<name>`` every ``weights_every`` steps, a bounded block
    of a large one. Both are taken on measured steps (multiples of
    ``every``) only, from hooks registered for those steps; an unknown name
    raises ValueError here, before anything is sent.

    With ``log_model`` (the default) the model record is sent too, built by
    :func:`model_record` from the model, ``loss_fn`` and ``optimizer``.
    Returns the :class:`Watch`; ``.unwatch()`` removes the hooks."""
    # Bad options fail before anything is sent.
    _check_periods(every, histograms_every, feature_maps_every, feature_map_channels,
                   weights_every)
    _resolve(model, _layers(model)[0], feature_maps, weights)
    if log_model:
        run.log_model(**model_record(model, loss_fn=loss_fn, optimizer=optimizer))
    return Watch(run, model, every, histograms_every, optimizer, feature_maps=feature_maps,
                 feature_maps_every=feature_maps_every, feature_map_channels=feature_map_channels,
                 weights=weights, weights_every=weights_every)


# -- the model record ----------------------------------------------------------
_LOSSES = {nn.CrossEntropyLoss: "cross_entropy", nn.NLLLoss: "nll", nn.BCELoss: "bce",
           nn.BCEWithLogitsLoss: "bce_with_logits", nn.MSELoss: "mse", nn.L1Loss: "l1",
           nn.SmoothL1Loss: "smooth_l1", nn.HuberLoss: "huber", nn.KLDivLoss: "kl_div"}


def _in_out(m: nn.Module) -> Tuple[Optional[int], Optional[int]]:
    for a, b in (("in_features", "out_features"), ("in_channels", "out_channels"),
                 ("input_size", "hidden_size"), ("num_embeddings", "embedding_dim"),
                 ("embed_dim", "embed_dim")):
        if hasattr(m, a) and hasattr(m, b):
            return int(getattr(m, a)), int(getattr(m, b))
    return None, None


def model_record(model: nn.Module, loss_fn: Any = None, optimizer: Any = None) -> Dict[str, Any]:
    """The ``model`` record's fields for ``run.log_model(**…)``: the weight
    layers in model order with type, in/out, parameters, the activation that
    follows each (the next activation module before the next weight layer;
    ``none`` when there is none), trainable; the loss from the loss
    function's class; the optimizer's name, lr, momentum and weight decay."""
    layers: List[Dict[str, Any]] = []
    last: Optional[Dict[str, Any]] = None
    for name, m in model.named_modules():
        own = list(m.parameters(recurse=False))
        if own:
            inputs, outputs = _in_out(m)
            last = {"name": name or type(m).__name__.lower(), "type": type(m).__name__,
                    "params": int(sum(p.numel() for p in own)), "activation": "none",
                    "trainable": any(p.requires_grad for p in own)}
            if inputs is not None:
                last["in"], last["out"] = inputs, outputs
            layers.append(last)
        elif isinstance(m, _ACTIVATIONS) and last is not None and last["activation"] == "none":
            last["activation"] = _activation_name(m)
    rec: Dict[str, Any] = {"layers": layers,
                           "total_params": int(sum(p.numel() for p in model.parameters()))}
    if loss_fn is not None:
        rec["loss"] = _LOSSES.get(type(loss_fn), type(loss_fn).__name__.lower())
    if optimizer is not None:
        group = optimizer.param_groups[0]
        opt: Dict[str, Any] = {"name": type(optimizer).__name__.lower()}
        if "lr" in group:
            opt["lr"] = float(group["lr"])
        if "momentum" in group:
            opt["momentum"] = float(group["momentum"])
        elif "betas" in group:
            opt["momentum"] = float(group["betas"][0])
        if "weight_decay" in group:
            opt["weight_decay"] = float(group["weight_decay"])
        rec["optimizer"] = opt
    return rec


# -- dataset summaries ---------------------------------------------------------
#: Most samples read from a Dataset or DataLoader for a summary.
MAX_DATASET_SAMPLES = 10_000


def _as_tensor(a: Any) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu()
    return torch.as_tensor(a)


def dataset_summary(x: Any, y: Any = None, max_samples: int = MAX_DATASET_SAMPLES) -> Dict[str, Any]:
    """The ``dataset`` record's fields from arrays (numpy or torch; ``x`` of
    shape [n, features…]), or from a ``Dataset`` / ``DataLoader`` of
    ``(x, y)`` items (``y`` then omitted), reading at most ``max_samples``:
    n, n_features, missing cells (NaN), per-feature mean and std (features
    flattened), class counts when the labels are integers."""
    n_total: Optional[int] = None
    if y is None and isinstance(x, (torch.utils.data.Dataset, torch.utils.data.DataLoader)):
        xs, ys = [], []
        dataset = getattr(x, "dataset", x)
        n_total = len(dataset) if hasattr(dataset, "__len__") else None
        count = 0
        if isinstance(x, torch.utils.data.DataLoader):
            for xb, yb in x:
                xs.append(_as_tensor(xb))
                ys.append(_as_tensor(yb).reshape(-1))
                count += len(xs[-1])
                if count >= max_samples:
                    break
        else:
            step = max(1, (n_total or max_samples) // max_samples)
            for i in range(0, n_total if n_total is not None else max_samples, step):
                xi, yi = dataset[i]
                xs.append(_as_tensor(xi).unsqueeze(0))
                ys.append(_as_tensor(yi).reshape(-1))
        xt = torch.cat(xs)[:max_samples]
        yt = torch.cat(ys)[:max_samples]
    else:
        xt = _as_tensor(x)
        yt = None if y is None else _as_tensor(y).reshape(-1)
        n_total = int(xt.shape[0])
    flat = xt.reshape(xt.shape[0], -1).double()
    missing = int(torch.isnan(flat).sum())
    clean = torch.where(torch.isnan(flat), torch.zeros_like(flat), flat)
    present = (~torch.isnan(flat)).sum(dim=0).clamp_min(1)
    mean = clean.sum(dim=0) / present
    var = (torch.where(torch.isnan(flat), torch.zeros_like(flat), (flat - mean) ** 2)).sum(dim=0) \
        / present
    out: Dict[str, Any] = {"n": int(n_total if n_total is not None else xt.shape[0]),
                           "n_features": int(flat.shape[1]), "missing": missing}
    if flat.shape[1] <= 10_000:
        out["feature_mean"] = [float(v) for v in mean.tolist()]
        out["feature_std"] = [float(math.sqrt(v)) for v in var.tolist()]
    if yt is not None and not torch.is_floating_point(yt):
        values, counts = torch.unique(yt, return_counts=True)
        out["class_counts"] = {str(int(v)): int(c) for v, c in zip(values.tolist(), counts.tolist())}
    return out
