"""Every TensorRT version difference the toolkit meets, in one place (8.2.1 / 8.5.2 / 10.3).

- network creation: 8.x needs the EXPLICIT_BATCH flag; 10.x is always explicit batch and
  offers STRONGLY_TYPED (create_network flags).
- workspace limit: 8.2 config.max_workspace_size; 8.5 and 10.x
  config.set_memory_pool_limit(MemoryPoolType.WORKSPACE, n).
- build: build_serialized_network everywhere (8.x build_engine is deprecated, gone in 10.x),
  then Runtime.deserialize_cuda_engine.
- I/O and execution: 8.2 bindings (num_bindings, binding_is_input, execute_async_v2); 8.5 and
  10.x the tensor API (num_io_tensors, get_tensor_name/mode/shape/dtype, set_tensor_address,
  execute_async_v3; set_input_shape instead of set_binding_shape).
- convolution kernel as a tensor input: documented for explicit-quantization networks only up
  to 8.2 (im2col fallback: shifted slices + matrix multiply), general from 8.5.
- FP16: BuilderFlag.FP16 plus OBEY_PRECISION_CONSTRAINTS (8.2: STRICT_TYPES) on weakly typed
  networks; strongly typed networks (10.x) take explicit casts instead.
- resize: ResizeMode (8.x) vs InterpolationMode (8.5+, only this in 10.x).
- casts: add_cast (8.6+); before that identity + set_output_type.
- engine device memory: device_memory_size; device_memory_size_v2 where present (10.1+).

`trt` is the imported tensorrt module (or a stand-in with the same attributes, in the tests).
Python 3.6 compatible; imports nothing itself.
"""
import numpy as np


def parse_version(text):
    # type: (str) -> Tuple[int, ...]
    parts = []
    for piece in str(text).split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    while len(parts) < 3:
        parts.append(0)
    return tuple(parts)


class Adapter(object):
    """Version-dependent calls of the TensorRT Python API."""

    def __init__(self, trt):
        self.trt = trt
        self.version = parse_version(getattr(trt, "__version__", "0"))

    # -- capabilities ---------------------------------------------------------------------------
    @property
    def has_strong_typing(self):
        # type: () -> bool
        return hasattr(self.trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")

    @property
    def default_conv_mode(self):
        # type: () -> str
        """'kernel_tensor': IConvolution/IDeconvolution with the kernel as input 1 (8.5+);
        'im2col': shifted slices + one matrix multiply (8.2, where a non-constant kernel input
        is documented for explicit-quantization networks only)."""
        return "kernel_tensor" if self.version >= (8, 5, 0) else "im2col"

    def conv_mode_problem(self, conv_mode):
        # type: (Optional[str]) -> Optional[str]
        """Why a requested conv_mode cannot be built by this version, or None."""
        if conv_mode == "kernel_tensor" and self.version < (8, 5, 0):
            return ("conv_mode 'kernel_tensor' needs TensorRT >= 8.5 (on {} a convolution's "
                    "kernel input is valid only in explicit quantization with a constant "
                    "kernel); use 'im2col'".format(".".join(map(str, self.version))))
        return None

    # -- dtypes ---------------------------------------------------------------------------------
    def dtype(self, name):
        # type: (str) -> Any
        return {"float32": self.trt.float32, "float16": self.trt.float16,
                "bool": self.trt.bool}[name]

    @staticmethod
    def numpy_dtype(name):
        # type: (str) -> Any
        return {"float32": np.float32, "float16": np.float16, "bool": np.bool_}[name]

    def to_numpy(self, data_type):
        # type: (Any) -> Any
        """The numpy dtype of a tensorrt.DataType. Not trt.nptype: TensorRT 8.5.2's maps bool to
        np.bool, which numpy 1.24 (JetPack 5's) removed (NVIDIA/TensorRT issues 2557, 2701)."""
        trt = self.trt
        names = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32,
                 "INT64": np.int64, "BOOL": np.bool_, "UINT8": np.uint8, "FP8": np.uint8,
                 "BF16": np.uint16}  # no numpy bf16/fp8: their raw bits
        for name, dtype in names.items():
            if hasattr(trt.DataType, name) and data_type == getattr(trt.DataType, name):
                return np.dtype(dtype)
        raise TypeError("no numpy dtype for TensorRT {}".format(data_type))

    def weights(self, array):
        # type: (Any) -> Any
        return self.trt.Weights(np.ascontiguousarray(array))

    def empty_weights(self, dtype="float32"):
        # type: (str) -> Any
        try:
            return self.trt.Weights(self.dtype(dtype))
        except TypeError:
            return self.trt.Weights()

    # -- network and builder ----------------------------------------------------------------------
    def create_network(self, builder, strongly_typed=False):
        # type: (Any, bool) -> Any
        trt = self.trt
        flags = 0
        if self.version < (10, 0, 0):
            flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        if strongly_typed:
            if not self.has_strong_typing:
                raise RuntimeError("TensorRT {} has no strongly typed networks".format(
                    ".".join(map(str, self.version))))
            flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        return builder.create_network(flags)

    def builder_config(self, builder, workspace_bytes, fp16=False, keep_fp32_layers=False):
        # type: (Any, int, bool, bool) -> Any
        """Config with a workspace limit; fp16: the FP16 builder flag (weakly typed networks);
        keep_fp32_layers: obey the per-layer precisions the emitter set (updates in FP32)."""
        trt = self.trt
        config = builder.create_builder_config()
        if hasattr(config, "set_memory_pool_limit"):
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
        else:
            config.max_workspace_size = int(workspace_bytes)
        if fp16:
            config.set_flag(trt.BuilderFlag.FP16)
            if keep_fp32_layers:
                flag = getattr(trt.BuilderFlag, "OBEY_PRECISION_CONSTRAINTS", None)
                if flag is None:
                    flag = trt.BuilderFlag.STRICT_TYPES
                config.set_flag(flag)
        return config

    def build_plan(self, builder, network, config):
        # type: (Any, Any, Any) -> bytes
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise RuntimeError("TensorRT could not build the engine (see its log above)")
        return bytes(plan)

    def deserialize(self, runtime, plan):
        # type: (Any, bytes) -> Any
        engine = runtime.deserialize_cuda_engine(plan)
        if engine is None:
            raise RuntimeError("TensorRT could not deserialize the engine")
        return engine

    # -- layers whose API changed -----------------------------------------------------------------
    def set_nearest(self, layer):
        # type: (Any) -> None
        trt = self.trt
        mode_enum = getattr(trt, "InterpolationMode", None) or trt.ResizeMode
        layer.resize_mode = mode_enum.NEAREST
        if hasattr(trt, "ResizeCoordinateTransformation"):
            layer.coordinate_transformation = trt.ResizeCoordinateTransformation.ASYMMETRIC
        if hasattr(trt, "ResizeRoundMode"):
            layer.nearest_rounding = trt.ResizeRoundMode.FLOOR

    def cast(self, network, tensor, dtype):
        # type: (Any, Any, str) -> Any
        """A layer converting `tensor` to dtype ('float32' | 'float16')."""
        if hasattr(network, "add_cast"):
            layer = network.add_cast(tensor, self.dtype(dtype))
        else:  # 8.2 / 8.5: identity with a forced output type (weakly typed networks)
            layer = network.add_identity(tensor)
            layer.set_output_type(0, self.dtype(dtype))
        return layer

    def pad(self, network, tensor, pre, post):
        # type: (Any, Any, Tuple[int, int], Tuple[int, int]) -> Any
        return network.add_padding_nd(tensor, tuple(pre), tuple(post))

    # -- engine I/O and execution ---------------------------------------------------------------
    def uses_tensor_api(self, engine):
        # type: (Any) -> bool
        return hasattr(engine, "num_io_tensors")

    def io_tensors(self, engine):
        # type: (Any) -> List[Dict[str, Any]]
        """[{name, input, shape, dtype (numpy)}] in engine order."""
        trt = self.trt
        out = []
        if self.uses_tensor_api(engine):
            for i in range(engine.num_io_tensors):
                name = engine.get_tensor_name(i)
                out.append({"name": name,
                            "input": engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
                            "shape": tuple(engine.get_tensor_shape(name)),
                            "dtype": self.to_numpy(engine.get_tensor_dtype(name))})
        else:
            for i in range(engine.num_bindings):
                out.append({"name": engine.get_binding_name(i),
                            "input": engine.binding_is_input(i),
                            "shape": tuple(engine.get_binding_shape(i)),
                            "dtype": self.to_numpy(engine.get_binding_dtype(i))})
        return out

    def executor(self, engine, context):
        # type: (Any, Any) -> Callable[[Dict[str, int], int], None]
        """A function (addresses by tensor name, stream handle) -> enqueue one execution."""
        if self.uses_tensor_api(engine):
            def run_v3(addresses, stream):
                for name, ptr in addresses.items():
                    context.set_tensor_address(name, int(ptr))
                if not context.execute_async_v3(stream):
                    raise RuntimeError("execute_async_v3 failed")

            return run_v3
        names = [engine.get_binding_name(i) for i in range(engine.num_bindings)]

        def run_v2(addresses, stream):
            if not context.execute_async_v2([int(addresses[n]) for n in names], stream):
                raise RuntimeError("execute_async_v2 failed")

        return run_v2

    def engine_memory(self, engine):
        # type: (Any) -> Dict[str, float]
        """What the engine says about its own memory (bytes), by the attribute this version has."""
        out = {}
        for attr in ("device_memory_size_v2", "device_memory_size"):
            if hasattr(engine, attr):
                out["engine_device_memory"] = float(getattr(engine, attr))
                break
        return out

    def set_input_shape(self, engine, context, name, shape):
        # type: (Any, Any, str, Sequence[int]) -> None
        """Fix a dynamic input's shape on the context (8.5+: by name; 8.2: by binding)."""
        if hasattr(context, "set_input_shape"):
            context.set_input_shape(name, tuple(int(d) for d in shape))
        else:
            index = engine.get_binding_index(name)
            context.set_binding_shape(index, tuple(int(d) for d in shape))

    def context_io(self, engine, context):
        # type: (Any, Any) -> List[Dict[str, Any]]
        """io_tensors() with the shapes resolved by the context (after set_input_shape)."""
        out = self.io_tensors(engine)
        for i, t in enumerate(out):
            if self.uses_tensor_api(engine):
                t["shape"] = tuple(context.get_tensor_shape(t["name"]))
            else:
                t["shape"] = tuple(context.get_binding_shape(i))
        return out

    def optimization_profile(self, builder, config, network, batch):
        # type: (Any, Any, Any, int) -> bool
        """A profile fixing every dynamic batch dimension at `batch` (False: nothing dynamic)."""
        profile, dynamic = builder.create_optimization_profile(), False
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            shape = tuple(tensor.shape)
            if any(d < 0 for d in shape):
                fixed = tuple(int(batch) if d < 0 else d for d in shape)
                profile.set_shape(tensor.name, fixed, fixed, fixed)
                dynamic = True
        if dynamic:
            config.add_optimization_profile(profile)
        return dynamic
