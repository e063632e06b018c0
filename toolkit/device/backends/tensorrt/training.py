"""TensorRT training cell: the hand-written step graph built as one engine, run step after step
with the parameter buffers swapped between steps.

Job (kind "training", framework "tensorrt"); fields as toolkit.device.training.common, plus:
- coords: "device" must be "cuda"; "precision" "fp32" | "fp16"; "freeze"; "batch".
- settings: "optimizer" must be "sgd" (momentum and weight decay supported); "lr", "momentum",
  "weight_decay"; "workspace" (bytes, default 1 GiB); "strongly_typed" (fp16 via explicit casts,
  TensorRT >= 10; default False = builder FP16 flag); "conv_mode" ("kernel_tensor" | "im2col";
  default per TensorRT version, see adapter.py); "loss_scale" (default 1 for fp32, 1024 for
  fp16); "epochs" (0: timing on `distinct_batches` fixed batches; > 0: that many epochs,
  "max_steps" caps them); "seed"; "bn_momentum".
- artifacts: "engine_cache_dir" (optional): plans cached per device, TensorRT version and config.

Initial parameters: the NeuralScale init of models/torch_modules.py drawn with numpy (same
distributions, not the same numbers as a torch-built model; seeded).

The timed region of one step: H2D of the batch (x, one-hot labels), the engine execution, D2H of
the loss (4 bytes), stream synchronize; the buffer swap (a pointer exchange) follows. GPU compute
time per step comes from CUDA events around the execution alone.
Records: setup stages, first_step, step_time_* (common.step_records), gpu_step_time_*, images/s
(throughput), device memory by stage and peak (cudaMemGetInfo), on an integrated GPU (Jetson) the
system memory deltas too, engine device memory, peak RSS, the loss trajectory.

The sequence (data, timed loop, the common records, the result) is the training scenario's
(toolkit.device.scenarios.training); TrtBackend holds what is TensorRT's: the CUDA context as
its scope, the engine, the step and the engine's own records.
"""
import contextlib
import time

import numpy as np

from toolkit.device.backends.tensorrt import emitter, runtime
from toolkit.device.backends.tensorrt.adapter import Adapter
from toolkit.device.measure.stats import summarize
from toolkit.device.results import NotRun
from toolkit.device.scenarios import training as scenario
from toolkit.device.training import common
from toolkit.device.training import numpy_reference as ref
from toolkit.device.training import step_graph as sg
from toolkit.device.training.flops import training_flops

GIB = 1 << 30


def init_params(cfg, seed):
    # type: (Any, int) -> Dict[str, Any]
    """NeuralScale init (conv kaiming-normal fan_out, bias 0; BN weight 0.5, bias 0, running
    mean 0, var 1; classifier N(0, 0.01), bias 0), float32, from a seeded numpy generator."""
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    params = {}
    for name, shape, _ in sg.parameter_shapes(cfg):
        module = name.rsplit(".", 1)[0]
        if len(shape) == 4:
            std = np.sqrt(2.0 / (shape[0] * shape[2] * shape[3]))
            params[name] = rng.standard_normal(shape) * std
        elif name.startswith("classifier") and name.endswith(".weight"):
            params[name] = rng.standard_normal(shape) * 0.01
        elif name.endswith(".weight"):  # BN gamma
            params[name] = np.full(shape, 0.5)
            params[module + ".running_mean"] = np.zeros(shape)
            params[module + ".running_var"] = np.ones(shape)
        else:
            params[name] = np.zeros(shape)
    return {k: v.astype(np.float32) for k, v in params.items()}


def step_config(job):
    # type: (Dict[str, Any]) -> Tuple[Any, Dict[str, Any]]
    coords, settings = job["coords"], job["settings"]
    opt = common.opt_settings(settings)
    if opt["optimizer"] != "sgd":
        raise NotRun("the TensorRT step graph implements SGD only ({} not built)".format(
            opt["optimizer"]))
    model, widths = common.model_widths(settings)
    precision = coords.get("precision", "fp32")
    cfg = sg.StepConfig(model, widths, int(settings.get("classes", 10)), int(coords["batch"]),
                        int(settings.get("image_size", 32)), int(coords.get("freeze", 0)),
                        opt["weight_decay"], opt["momentum"],
                        bn_momentum=float(settings.get("bn_momentum", 0.1)),
                        loss_scale=float(settings.get("loss_scale",
                                                      1024.0 if precision == "fp16" else 1.0)))
    return cfg, opt


def check_cell(adapter, coords, settings, has_fast_fp16):
    # type: (Adapter, Dict[str, Any], Dict[str, Any], bool) -> None
    if coords.get("device", "cuda") != "cuda":
        raise NotRun("TensorRT runs on CUDA devices only, not {!r}".format(coords.get("device")))
    precision = coords.get("precision", "fp32")
    if precision not in ("fp32", "fp16"):
        raise NotRun("TensorRT training is built for fp32 and fp16, not {}".format(precision))
    if precision == "fp16" and not has_fast_fp16:
        raise NotRun("this GPU has no fast FP16 (builder.platform_has_fast_fp16 is False)")
    if settings.get("strongly_typed") and not adapter.has_strong_typing:
        raise NotRun("strongly typed networks need TensorRT >= 10, this is {}".format(
            ".".join(map(str, adapter.version))))
    problem = adapter.conv_mode_problem(settings.get("conv_mode"))
    if problem:
        raise NotRun(problem)


def build_plan(trt, adapter, logger, graph, precision, workspace, strongly_typed, conv_mode):
    # type: (Any, Adapter, Any, Any, str, int, bool, Optional[str]) -> Tuple[bytes, Dict[str, Any]]
    builder = trt.Builder(logger)
    network = adapter.create_network(builder, strongly_typed)
    built = emitter.emit(graph, network, trt, precision, strongly_typed, conv_mode)
    fp16_flag = precision == "fp16" and not strongly_typed
    config = adapter.builder_config(builder, workspace, fp16=fp16_flag,
                                    keep_fp32_layers=fp16_flag)
    plan = adapter.build_plan(builder, network, config)
    settings = dict(built.settings, layers=int(network.num_layers))
    return plan, settings


class TrtTrainer(object):
    """Engine, context, buffers and the step: `step(x, onehot)` -> loss (float). close() (inside
    the CUDA context) releases every TensorRT and CUDA object it holds."""

    def __init__(self, trt, cuda, adapter, plan, graph, state, lr):
        self.graph = graph
        self.session = runtime.EngineSession(trt, cuda, adapter, runtime.make_logger(trt), plan)
        self.engine = self.session.engine
        self.session.create_context()
        self.buffers = self.session.allocate(adapter.io_tensors(self.engine))
        self.pairs = graph.meta["state"]
        for name, value in state.items():
            self.buffers.upload(name, value)
        self.set_lr(lr)
        self.timer = runtime.EventTimer(cuda)
        self.gpu_times = []  # type: List[float]

    def set_lr(self, lr):
        self.buffers.upload("lr", np.array([lr], dtype=np.float32))

    def step(self, x, onehot):
        # type: (Any, Any) -> float
        session, buffers = self.session, self.buffers
        stream = session.stream
        buffers.upload("x", x, stream)
        buffers.upload("onehot", onehot, stream)
        self.timer.begin(stream)
        session.execute(buffers.addresses(), stream.handle)
        self.timer.finish(stream)
        loss = buffers.download("loss", stream)
        stream.synchronize()
        self.gpu_times.append(self.timer.seconds())
        buffers.swap(self.pairs)
        return float(loss.reshape(-1)[0])

    def state(self):
        # type: () -> Dict[str, Any]
        """Current parameters, momentum buffers and running statistics (host copies)."""
        return {name: self.buffers.download(name).copy() for name, _ in self.pairs}

    def close(self):
        self.timer = None
        self.engine = self.buffers = None
        self.session.close()


class TrtBackend(scenario.TrainingBackend):
    """TensorRT's side of the training scenario (toolkit.device.scenarios.training): the scope
    is the CUDA context, and the engine is released in it, before the context is popped."""

    def __init__(self):
        self.trt, self.cuda = runtime.require_stack()
        self.adapter = Adapter(self.trt)
        self.name = "tensorrt " + self.trt.__version__  # the progress line names the version
        self.trainer = None  # type: Optional[TrtTrainer]

    @contextlib.contextmanager
    def scope(self, job):
        with runtime.CudaContext(self.cuda) as ctx:
            self.gpu = ctx.describe()
            self.probe = runtime.MemoryProbe(self.cuda, self.gpu["integrated"])
            self.logger = runtime.make_logger(self.trt)
            try:
                yield
            finally:
                if self.trainer is not None:
                    self.trainer.close()  # while the CUDA context is current

    def check(self, job):
        # type: (Dict[str, Any]) -> None
        self.cfg, self.opt = step_config(job)
        fast_fp16 = self.trt.Builder(self.logger).platform_has_fast_fp16
        check_cell(self.adapter, job["coords"], job["settings"], fast_fp16)

    def setup(self, job, dataset):
        # type: (Dict[str, Any], Any) -> Dict[str, Any]
        trt, adapter, cfg, settings = self.trt, self.adapter, self.cfg, job["settings"]
        if dataset.classes != cfg.classes:
            raise ValueError("data set {} has {} classes, settings.classes says {}".format(
                dataset.name, dataset.classes, cfg.classes))
        self.precision = precision = job["coords"].get("precision", "fp32")
        self.strongly = strongly = bool(settings.get("strongly_typed", False))
        self.workspace = workspace = int(settings.get("workspace", GIB))
        seed = int(settings.get("seed", 0))
        params = init_params(cfg, seed)
        started = time.perf_counter()
        self.graph = graph = sg.build_vgg_step(
            cfg, {n: params[n] for n in sg.frozen_value_names(cfg)})
        self.define_seconds = time.perf_counter() - started
        self.fields = {"kind": "tensorrt-training", "format": 1, "step": cfg.as_dict(),
                       "seed": seed, "precision": precision, "strongly_typed": strongly,
                       "workspace": workspace,
                       "conv_mode": settings.get("conv_mode") or adapter.default_conv_mode,
                       "tensorrt": trt.__version__, "gpu": self.gpu["name"],
                       "compute_capability": self.gpu["compute_capability"]}
        self.emitted = {}  # type: Dict[str, Any]

        def build():
            plan, info = build_plan(trt, adapter, self.logger, graph, precision, workspace,
                                    strongly, settings.get("conv_mode"))
            self.emitted.update(info)
            return plan

        self.plan, self.from_cache, self.build_seconds = runtime.cached_plan(
            job.get("artifacts", {}).get("engine_cache_dir"), self.fields, build)
        self.probe.mark("built")
        started = time.perf_counter()
        self.trainer = TrtTrainer(trt, self.cuda, adapter, self.plan, graph,
                                  ref.initial_state(graph, params), self.opt["lr"])
        self.load_seconds = time.perf_counter() - started
        self.probe.mark("engine_and_buffers")
        self.engine_info = adapter.engine_memory(self.trainer.engine)
        return training_flops(cfg.model, cfg.widths, cfg.freeze, cfg.classes, cfg.image_size)

    def prepare(self, x, y):
        return x, ref.one_hot(y, self.cfg.classes)

    def step(self, x, y):
        return self.trainer.step(x, y)

    def measurements(self, samples):
        # type: (List[float]) -> Tuple[List[Tuple[str, float, str]], Dict[str, Any]]
        self.probe.mark("after_steps")
        gpu_times = self.trainer.gpu_times[-len(samples):]
        records = [("gpu_step_time_" + k, v, "s") for k, v in sorted(summarize(gpu_times).items())
                   if k not in ("n", "cv", "rcv")]
        records += [("network_define", self.define_seconds, "s"),
                    ("engine_build", self.build_seconds, "s"),
                    ("engine_from_cache", float(self.from_cache), "ratio"),
                    ("engine_load", self.load_seconds, "s"),
                    ("engine_plan_size", float(len(self.plan)), "B")]
        records += [(k, v, "B") for k, v in sorted(self.engine_info.items())]
        records += self.probe.records()
        return records, {"gpu_step_time": {"unit": "s", "values": gpu_times}}

    def describe(self):
        # type: () -> Dict[str, Dict[str, Any]]
        return {
            "settings": dict(self.opt, step=self.cfg.as_dict(), precision=self.precision,
                             strongly_typed=self.strongly, workspace=self.workspace,
                             emitter=self.emitted, engine_cache_fields=self.fields,
                             trainable_params=self.graph.meta["trainable"], gpu=self.gpu,
                             accuracy="not measured"),
            "versions": {"tensorrt": self.trt.__version__, "numpy": np.__version__,
                         "pycuda": getattr(__import__("pycuda"), "VERSION_TEXT", "unknown")},
        }


def run(job):
    # type: (Dict[str, Any]) -> Dict[str, Any]
    """The "training" job for framework "tensorrt"."""
    return scenario.run(job, TrtBackend())
