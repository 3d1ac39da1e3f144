"""Exact ONNX graph rewrites that let onnxruntime's CPU provider run the model faster.

onnx + numpy only (no torch): ``export.py`` applies ``optimize_for_cpu`` before its ORT-vs-torch
parity check. Every rewrite computes the same function (to float rounding); none changes the
weights' meaning. The four of them:

* ``split_unaligned_concat_convs``: onnxruntime runs a Conv in its fast blocked layout (NCHWc)
  only when the input channel count is a multiple of the SIMD block (16 floats on AVX-512, 8 on
  AVX2) or below 8. A decoder conv over ``concat(upsampled features, skip, 1-channel depth)`` has,
  e.g., 64 + 48 + 1 = 113 input channels and falls back to the plain NCHW kernel at about half
  the speed. Convolution is linear in its input channels, so
  ``BN(Conv_W(concat(a, b, d))) = Conv_{W'[:, :Ca+Cb]}(concat(a, b)) + Conv_{W'[:, Ca+Cb:]}(d)``
  with the BatchNormalization folded into ``W'`` and the bias.
* ``subpixel_upsample_convs``: a 3x3 conv after ×2 nearest upsampling sees each input pixel
  twice along each axis, so every output phase (row parity a, column parity b) is a 2x2 conv on
  the *low-resolution* input with summed taps; four such convs interleaved by DepthToSpace give
  the same map with 4/9 of the multiply-adds and no upsampled tensor.
* ``split_concat_pointwise_convs``: a 1x1 conv over a channel concatenation equals the sum of
  1x1 convs over its pieces. In a dense block (the DASPP) every branch concatenates all earlier
  features again, so the copies grow with the depth of the block; the sum avoids them, and
  onnxruntime accumulates each partial conv into the previous one's output.
* ``depthwise_single_output_convs``: a k x k conv with one output channel (a depth head) is
  padded to a full block of 16 output channels in NCHWc, i.e. 16x the work; as a depthwise
  k x k conv followed by a 1x1 channel sum it costs about one channel's worth.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

SUBPIXEL_MAX_IN_CHANNELS = 128
"""Widest upconv input that ``subpixel_upsample_convs`` rewrites by default (see there)."""

CHANNEL_BLOCK = 16
"""Input channel multiple that keeps a conv in onnxruntime's NCHWc layout on every x86 CPU
(AVX-512 blocks of 16; AVX2's blocks of 8 divide it)."""

# Resize attributes under which ×2 nearest upsampling maps output index 2i + a to input i
# (a ∈ {0, 1}): asymmetric coordinates x/2 rounded down, or half-pixel coordinates
# x/2 − 1/4 rounded to nearest.
_NEAREST_X2_MODES = {(b'asymmetric', b'floor'), (b'asymmetric', b'round_prefer_floor'),
                     (b'half_pixel', b'round_prefer_floor'), (b'half_pixel', b'round_prefer_ceil'),
                     (b'pytorch_half_pixel', b'round_prefer_floor'),
                     (b'pytorch_half_pixel', b'round_prefer_ceil')}


@dataclass(frozen=True)
class SplitConv:
    """One rewritten conv: its name and the input channels before and after the split."""

    name: str
    parts: tuple[int, ...]
    aligned: int
    rest: int


@dataclass(frozen=True)
class PassReport:
    """What ``optimize_for_cpu`` rewrote: node names per pass."""

    split: tuple[str, ...]
    subpixel: tuple[str, ...]
    pointwise: tuple[str, ...]
    depthwise: tuple[str, ...]

    def counts(self) -> dict[str, int]:
        """Pass (function name) → nodes it rewrote, as the model metadata records it."""
        return {'subpixel_upsample_convs': len(self.subpixel),
                'split_concat_pointwise_convs': len(self.pointwise),
                'split_unaligned_concat_convs': len(self.split),
                'depthwise_single_output_convs': len(self.depthwise)}


def optimize_for_cpu(model: Any, block: int = CHANNEL_BLOCK) -> PassReport:
    """Apply every rewrite of this module to ``model`` (an ``onnx.ModelProto``, in place).

    The caller validates the result (``export`` runs ``onnx.checker`` and the ORT-vs-torch
    parity check on it).
    """
    subpixel = subpixel_upsample_convs(model)
    pointwise = split_concat_pointwise_convs(model, block)
    split = split_unaligned_concat_convs(model, block)
    depthwise = depthwise_single_output_convs(model)
    return PassReport(tuple(s.name for s in split), tuple(subpixel), tuple(pointwise),
                      tuple(depthwise))


class _Graph:
    """Lookups over one graph plus a queue of node replacements applied by ``commit``."""

    def __init__(self, model: Any) -> None:
        self.graph = model.graph
        self.inits = {tensor.name: tensor for tensor in self.graph.initializer}
        self.producer = {out: node for node in self.graph.node for out in node.output}
        self.consumers: dict[str, list[Any]] = {}
        for node in self.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        for output in self.graph.output:  # a graph output is a use that must survive
            self.consumers.setdefault(output.name, []).append(output)
        self.replaced: dict[int, list[Any]] = {}  # id(node) -> nodes that take its place
        self.dropped: set[int] = set()
        self.added: dict[str, np.ndarray] = {}

    def array(self, name: str) -> np.ndarray | None:
        """Value of an initializer or a Constant node's output, else None."""
        from onnx import helper, numpy_helper

        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        node = self.producer.get(name)
        if node is None or node.op_type != 'Constant' or not node.attribute:
            return None
        value = helper.get_attribute_value(node.attribute[0])
        if node.attribute[0].name == 'value':
            return numpy_helper.to_array(value)
        if node.attribute[0].name in ('value_float', 'value_floats', 'value_int', 'value_ints'):
            return np.asarray(value)
        return None

    def sole_consumer(self, name: str, op_type: str) -> Any | None:
        """The only consumer of ``name`` if it is a node of ``op_type``."""
        users = self.consumers.get(name, [])
        if len(users) == 1 and getattr(users[0], 'op_type', '') == op_type:
            return users[0]
        return None

    def concat_feeding(self, conv: Any) -> Any | None:
        """The channel Concat that is ``conv``'s data input and has no other use, else None."""
        concat = self.producer.get(conv.input[0])
        if (concat is None or concat.op_type != 'Concat' or _attr(concat, 'axis') != 1
                or len(self.consumers[concat.output[0]]) != 1):
            return None
        return concat

    def conv_weights(self, conv: Any) -> tuple[np.ndarray, np.ndarray] | None:
        """A Conv's weight and bias (zeros when absent) in float64, if both are constant."""
        if len(conv.input) < 2 or conv.input[1] not in self.inits:
            return None
        bias_name = conv.input[2] if len(conv.input) > 2 else ''
        if bias_name and bias_name not in self.inits:
            return None
        weight = self.array(conv.input[1]).astype(np.float64)
        bias = (self.array(bias_name).astype(np.float64) if bias_name
                else np.zeros(weight.shape[0]))
        return weight, bias

    def fold_following_batch_norm(self, conv: Any, weight: np.ndarray,
                                  bias: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
        """Fold a BatchNormalization that is the conv's only use; returns the new output name."""
        norm = self.sole_consumer(conv.output[0], 'BatchNormalization')
        if (norm is None or len(norm.output) != 1
                or not all(name in self.inits for name in norm.input[1:5])):
            return weight, bias, conv.output[0]
        gamma, beta, mean, var = (self.array(name).astype(np.float64)
                                  for name in norm.input[1:5])
        scale = gamma / np.sqrt(var + _attr(norm, 'epsilon', 1e-5))
        self.dropped.add(id(norm))
        return (weight * scale[:, None, None, None], (bias - mean) * scale + beta,
                norm.output[0])

    def add_initializer(self, name: str, value: np.ndarray) -> str:
        """Queue a float32 initializer (once per name); returns the name."""
        self.added.setdefault(name, value.astype(np.float32))
        return name

    def commit(self) -> None:
        """Apply the queued replacements, keeping topological order, then drop what became
        unused: Constant nodes (a Resize's scales), initializers and stale shape annotations."""
        from onnx import numpy_helper

        rebuilt = []
        for node in self.graph.node:
            if id(node) in self.replaced:
                rebuilt.extend(self.replaced[id(node)])
            elif id(node) not in self.dropped:
                rebuilt.append(node)
        used = ({name for node in rebuilt for name in node.input}
                | {output.name for output in self.graph.output})
        rebuilt = [node for node in rebuilt
                   if node.op_type != 'Constant' or node.output[0] in used]
        del self.graph.node[:]
        self.graph.node.extend(rebuilt)
        self.graph.initializer.extend(numpy_helper.from_array(value, name)
                                      for name, value in self.added.items())
        keep = [tensor for tensor in self.graph.initializer if tensor.name in used]
        del self.graph.initializer[:]
        self.graph.initializer.extend(keep)
        produced = {name for node in rebuilt for name in node.output}
        info = [entry for entry in self.graph.value_info if entry.name in produced]
        del self.graph.value_info[:]
        self.graph.value_info.extend(info)


def split_unaligned_concat_convs(model: Any, block: int = CHANNEL_BLOCK) -> list[SplitConv]:
    """Split convs over unaligned channel concatenations (see the module notes), in place.

    A Conv qualifies when its data input is a channel Concat used by nothing else, its input
    channel count is not a multiple of ``block``, a leading run of the Concat's inputs adds up
    to a multiple of ``block``, and its weights (and any BatchNormalization that is its sole
    consumer) are initializers.

    Returns:
        What was rewritten (empty when nothing qualified).
    """
    from onnx import helper

    g = _Graph(model)
    channels = _channel_counts(model)
    done: list[SplitConv] = []
    for conv in model.graph.node:
        if conv.op_type != 'Conv' or _attr(conv, 'group', 1) != 1:
            continue
        concat = g.concat_feeding(conv)
        if concat is None:
            continue
        parts = [channels.get(name) for name in concat.input]
        if None in parts or sum(parts) % block == 0:
            continue
        cut = max((k + 1 for k in range(len(parts)) if sum(parts[:k + 1]) % block == 0),
                  default=0)
        weights = g.conv_weights(conv)
        if cut == 0 or weights is None:  # cut < len(parts): the whole sum is unaligned
            continue
        weight, bias, output = g.fold_following_batch_norm(conv, *weights)
        aligned = sum(parts[:cut])
        prefix = f'{conv.name or output}_split'
        names = {key: f'{prefix}_{key}' for key in ('xa', 'xr', 'ya', 'yr')}
        wa = g.add_initializer(f'{prefix}_wa', weight[:, :aligned])
        ba = g.add_initializer(f'{prefix}_ba', bias)
        wr = g.add_initializer(f'{prefix}_wr', weight[:, aligned:])
        nodes = []
        head, tail = list(concat.input[:cut]), list(concat.input[cut:])
        xa = head[0] if len(head) == 1 else names['xa']
        xr = tail[0] if len(tail) == 1 else names['xr']
        if len(head) > 1:
            nodes.append(helper.make_node('Concat', head, [xa], name=f'{prefix}_cat_a', axis=1))
        if len(tail) > 1:
            nodes.append(helper.make_node('Concat', tail, [xr], name=f'{prefix}_cat_r', axis=1))
        conv_a = helper.make_node('Conv', [xa, wa, ba], [names['ya']], name=f'{prefix}_a')
        conv_r = helper.make_node('Conv', [xr, wr], [names['yr']], name=f'{prefix}_r')
        for node in (conv_a, conv_r):
            node.attribute.extend(conv.attribute)
        nodes += [conv_a, conv_r,
                  helper.make_node('Add', [names['ya'], names['yr']], [output],
                                   name=f'{prefix}_add')]
        g.replaced[id(concat)] = nodes
        g.dropped.add(id(conv))
        done.append(SplitConv(conv.name, tuple(parts), aligned, sum(parts) - aligned))
    if done:
        g.commit()
    return done


def split_concat_pointwise_convs(model: Any, block: int = CHANNEL_BLOCK) -> list[str]:
    """Replace a 1x1 Conv over a channel Concat by a running sum of per-piece 1x1 convs.

    Qualifies: an ungrouped 1x1, stride-1 Conv with constant weights whose data input is a
    channel Concat used by nothing else, with every piece a multiple of ``block`` channels (so
    each partial conv stays in NCHWc). A BatchNormalization that is the conv's only use is folded
    (bias on the first partial conv); an activation after it stays where it is.

    Returns:
        Names of the rewritten convs.
    """
    from onnx import helper

    g = _Graph(model)
    channels = _channel_counts(model)
    done: list[str] = []
    for conv in model.graph.node:
        if (conv.op_type != 'Conv' or _attr(conv, 'group', 1) != 1
                or list(_attr(conv, 'strides', [1, 1])) != [1, 1]
                or any(_attr(conv, 'pads', [0, 0, 0, 0]))):
            continue
        concat = g.concat_feeding(conv)
        if concat is None or len(concat.input) < 2:
            continue
        parts = [channels.get(name) for name in concat.input]
        weights = g.conv_weights(conv)
        if (None in parts or any(part % block for part in parts) or weights is None
                or weights[0].shape[2:] != (1, 1)):
            continue
        weight, bias, output = g.fold_following_batch_norm(conv, *weights)
        prefix = f'{conv.name or output}_pointwise'
        nodes, start, total = [], 0, ''
        for index, (piece, count) in enumerate(zip(concat.input, parts)):
            inputs = [piece, g.add_initializer(f'{prefix}_{index}_w',
                                               weight[:, start:start + count])]
            if index == 0:
                inputs.append(g.add_initializer(f'{prefix}_b', bias))
            start += count
            partial = f'{prefix}_{index}'
            nodes.append(helper.make_node('Conv', inputs, [partial], name=partial,
                                          kernel_shape=[1, 1]))
            if total:
                summed = output if index == len(parts) - 1 else f'{prefix}_{index}_sum'
                nodes.append(helper.make_node('Add', [total, partial], [summed],
                                              name=f'{prefix}_{index}_add'))
                partial = summed
            total = partial
        g.replaced[id(concat)] = nodes
        g.dropped.add(id(conv))
        done.append(conv.name)
    if done:
        g.commit()
    return done


def subpixel_phase_kernels(weight: np.ndarray) -> list[np.ndarray]:
    """(O, I, 3, 3) kernel after ×2 nearest upsampling → four (O, I, 2, 2) low-res kernels.

    Phase (a, b) (output row parity a, column parity b) is returned at index 2a + b, the order
    DepthToSpace's DCR mode expects. Along one axis, output 2i reads inputs i−1, i, i with taps
    w0, w1, w2, so its kernel is (w0, w1 + w2) over offsets (−1, 0); output 2i + 1 reads i, i,
    i + 1: (w0 + w1, w2) over offsets (0, +1).
    """
    def fold(w: np.ndarray, parity: int, axis: int) -> np.ndarray:
        t0, t1, t2 = (np.take(w, k, axis=axis) for k in range(3))
        pair = (t0, t1 + t2) if parity == 0 else (t0 + t1, t2)
        return np.stack(pair, axis=axis)

    return [fold(fold(weight, a, 2), b, 3) for a in (0, 1) for b in (0, 1)]


def subpixel_upsample_convs(model: Any, min_in_channels: int = 32,
                            max_in_channels: int | None = SUBPIXEL_MAX_IN_CHANNELS) -> list[str]:
    """Replace ×2 nearest Resize → 3x3 Conv by four 2x2 phase convs + DepthToSpace, in place.

    Qualifies: a nearest Resize with constant scales (1, 1, 2, 2) in a mode listed in
    ``_NEAREST_X2_MODES`` whose only use is a 3x3, stride-1, undilated, ungrouped Conv with
    "same" zero padding and constant weights. A BatchNormalization that is the conv's only use
    is folded; a Relu after that moves before the interleave (it commutes with it), so
    onnxruntime fuses it into the phase convs.

    Args:
        model: an ``onnx.ModelProto``, rewritten in place.
        min_in_channels: convs with fewer input channels are left alone: the interleave
            (DepthToSpace, about a tenth of copy speed in onnxruntime's CPU kernels) only pays
            where the saved arithmetic per output value (5 of 9 taps × input channels) is
            large. Measured on the student at 352×704: every upconv gains through OpenVINO,
            including the full-resolution one with 32 input channels (−4 %); through ORT's
            own CPU kernels that one costs about 1 % and the others gain.
        max_in_channels: convs with more input channels are left alone too (None: no
            limit). The four phase kernels hold 16/9 of the 3x3 weights, and the widest
            upconvs, which run at 1/16 and 1/8 of the input size, hold most of them: on the
            student they add 4 MB to the file (over the 40 MB the shipped file must stay under)
            for at most about 2 ms at 192×352 (docs/performance.md, log of earlier runs).

    Returns:
        Names of the rewritten convs.
    """
    from onnx import helper

    g = _Graph(model)
    done: list[str] = []
    for resize in model.graph.node:
        if resize.op_type != 'Resize' or not _is_nearest_x2(g, resize):
            continue
        conv = g.sole_consumer(resize.output[0], 'Conv')
        if conv is None or conv.input[0] != resize.output[0] or not _is_same_3x3(conv):
            continue
        weights = g.conv_weights(conv)
        if (weights is None or weights[0].shape[2:] != (3, 3)
                or weights[0].shape[1] < min_in_channels
                or (max_in_channels is not None and weights[0].shape[1] > max_in_channels)):
            continue
        weight, bias, output = g.fold_following_batch_norm(conv, *weights)
        relu = g.sole_consumer(output, 'Relu')
        if relu is not None:
            g.dropped.add(id(relu))
            output = relu.output[0]
        prefix = f'{conv.name or output}_subpixel'
        bias_name = g.add_initializer(f'{prefix}_b', bias)
        nodes, phases = [], []
        for index, kernel in enumerate(subpixel_phase_kernels(weight)):
            a, b = divmod(index, 2)
            name = f'{prefix}_{a}{b}'
            weight_name = g.add_initializer(f'{name}_w', kernel)
            # Phase a reads offsets (−1, 0) when a = 0, (0, +1) when a = 1: pad before or after.
            nodes.append(helper.make_node('Conv', [resize.input[0], weight_name, bias_name],
                                          [f'{name}_conv'], name=name, kernel_shape=[2, 2],
                                          pads=[1 - a, 1 - b, a, b]))
            phase = f'{name}_conv'
            if relu is not None:
                nodes.append(helper.make_node('Relu', [phase], [f'{name}_relu'],
                                              name=f'{name}_relu'))
                phase = f'{name}_relu'
            phases.append(phase)
        nodes += [helper.make_node('Concat', phases, [f'{prefix}_phases'], name=f'{prefix}_cat',
                                   axis=1),
                  helper.make_node('DepthToSpace', [f'{prefix}_phases'], [output],
                                   name=f'{prefix}_interleave', blocksize=2, mode='DCR')]
        g.dropped.add(id(resize))
        g.replaced[id(conv)] = nodes
        done.append(conv.name)
    if done:
        g.commit()
    return done


def depthwise_single_output_convs(model: Any, min_channels: int = CHANNEL_BLOCK) -> list[str]:
    """Replace k x k convs with one output channel by depthwise k x k + 1x1 sum, in place.

    Qualifies: an ungrouped Conv with constant weights of shape (1, C, k, k), k > 1, C ≥
    ``min_channels`` (below that the padding waste is small). Convs sharing weights and input
    (the depth head and the saliency's copy of it) get identical replacements, so onnxruntime's
    common-subexpression elimination still computes them once.

    Returns:
        Names of the rewritten convs.
    """
    from onnx import helper

    g = _Graph(model)
    done: list[str] = []
    for conv in model.graph.node:
        if conv.op_type != 'Conv' or _attr(conv, 'group', 1) != 1:
            continue
        weights = g.conv_weights(conv)
        if weights is None:
            continue
        weight, bias = weights
        out_channels, channels, *kernel = weight.shape
        if out_channels != 1 or channels < min_channels or max(kernel) == 1:
            continue
        key = conv.input[1]  # names derive from the weights, so shared weights share them
        depthwise = g.add_initializer(f'{key}_depthwise', weight[0][:, None])
        ones = g.add_initializer(f'{key}_channel_sum', np.ones((1, channels, 1, 1)))
        bias_name = g.add_initializer(f'{key}_channel_sum_bias', bias)
        spatial = helper.make_node('Conv', [conv.input[0], depthwise], [f'{conv.output[0]}_dw'],
                                   name=f'{conv.name}_depthwise', group=channels)
        spatial.attribute.extend(a for a in conv.attribute if a.name != 'group')
        total = helper.make_node('Conv', [spatial.output[0], ones, bias_name], [conv.output[0]],
                                 name=f'{conv.name}_channel_sum', kernel_shape=[1, 1])
        g.replaced[id(conv)] = [spatial, total]
        done.append(conv.name)
    if done:
        g.commit()
    return done


def _is_nearest_x2(g: _Graph, resize: Any) -> bool:
    modes = (_attr(resize, 'coordinate_transformation_mode', b'half_pixel'),
             _attr(resize, 'nearest_mode', b'round_prefer_floor'))
    if _attr(resize, 'mode', b'nearest') != b'nearest' or modes not in _NEAREST_X2_MODES:
        return False
    if len(resize.input) != 3 or not resize.input[2]:  # scales given (not sizes)
        return False
    scales = g.array(resize.input[2])
    return scales is not None and np.array_equal(scales, [1.0, 1.0, 2.0, 2.0])


def _is_same_3x3(conv: Any) -> bool:
    return (_attr(conv, 'group', 1) == 1 and list(_attr(conv, 'strides', [1, 1])) == [1, 1]
            and list(_attr(conv, 'dilations', [1, 1])) == [1, 1]
            and list(_attr(conv, 'pads', [0, 0, 0, 0])) == [1, 1, 1, 1]
            and _attr(conv, 'auto_pad', b'NOTSET') == b'NOTSET')


def _attr(node: Any, name: str, default: Any = None) -> Any:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _channel_counts(model: Any) -> dict[str, int]:
    """Channel dimension of every 4-D tensor whose shape inference knows it."""
    from onnx import shape_inference

    inferred = shape_inference.infer_shapes(model)
    counts = {}
    for info in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
        dims = info.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].HasField('dim_value'):
            counts[info.name] = int(dims[1].dim_value)
    return counts
