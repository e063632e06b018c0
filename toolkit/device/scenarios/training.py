"""The training scenario: one cell's sequence, written once for every backend.

The scenario owns what makes the three frameworks' numbers comparable: the RSS baseline, the
data, the timed loop (common.timed_training: warm-up and sampling protocol, max_steps), the
records (first step, step times, throughput, FLOPs, memory, losses and the verdict), the
evaluation of an epochs > 0 run and the result dict. A backend (torch_trainer.TorchBackend,
ort_trainer.OrtBackend, tensorrt.training.TrtBackend) only says how to build, step, evaluate
and describe itself, so a fix to the sequence reaches every framework (a private copy of the
loop in one trainer once ignored max_steps).

The interface (TrainingBackend; `setup`, `step` and `describe` have no default):

- constructor: imports the framework (NotRun when absent): the RSS baseline includes it.
- scope(job): a context manager the rest runs in (TensorRT: the CUDA context, whose engine is
  released before the context is popped); default: none.
- check(job): raise NotRun when the cell cannot run here; runs before any data is loaded.
- setup(job, dataset) -> FLOPs (flops.training_flops of the model built): model, optimizer,
  session or engine, and the backend's own setup timings.
- prepare(x, y) -> (x, y): a numpy batch in the step's form, outside the timed region.
- step(x, y) -> loss: one optimizer step, the timed region.
- measurements(samples) -> (records, sample series): the backend's own records (setup stages,
  device memory), read right after the steps; `samples` are the kept step times.
- evaluate(dataset) -> {metric: ratio}: after an epochs > 0 run (accuracy); default: nothing.
- describe() -> {"settings": {...}, "versions": {...}}: the backend's effective settings.

Job fields: see toolkit.device.training.common.
"""
import contextlib

from toolkit.device.measure import memory
from toolkit.device.measure.sampling import Protocol
from toolkit.device.results import memory_records
from toolkit.device.training import common


class TrainingBackend(object):
    """One framework's side of a training cell (see the module docstring)."""

    name = "backend"  # the progress line's label

    def scope(self, job):
        # type: (Dict[str, Any]) -> Any
        return _nothing()

    def check(self, job):
        # type: (Dict[str, Any]) -> None
        pass

    def setup(self, job, dataset):
        # type: (Dict[str, Any], Any) -> Dict[str, Any]
        raise NotImplementedError

    def prepare(self, x, y):
        # type: (Any, Any) -> Tuple[Any, Any]
        return x, y

    def step(self, x, y):
        # type: (Any, Any) -> Any
        raise NotImplementedError

    def measurements(self, samples):
        # type: (List[float]) -> Tuple[List[Tuple[str, float, str]], Dict[str, Any]]
        return [], {}

    def evaluate(self, dataset):
        # type: (Any) -> Dict[str, float]
        return {}

    def describe(self):
        # type: () -> Dict[str, Dict[str, Any]]
        raise NotImplementedError


@contextlib.contextmanager
def _nothing():
    yield


def run(job, backend):
    # type: (Dict[str, Any], TrainingBackend) -> Dict[str, Any]
    """A "training" job's result: the one sequence every backend goes through."""
    rss_baseline = memory.peak_rss_bytes()  # interpreter + numpy + the backend's framework
    coords, settings = job["coords"], job["settings"]
    batch, seed = int(coords["batch"]), int(settings.get("seed", 0))
    epochs = int(settings.get("epochs", 0))
    protocol = Protocol.from_dict(job["protocol"])
    with backend.scope(job):
        backend.check(job)
        dataset = common.load_data(job)
        flops = backend.setup(job, dataset)
        model, _ = common.model_widths(settings)
        common.progress("{} {} {} {} freeze={} batch={} epochs={}".format(
            backend.name, model, coords.get("device"), coords.get("precision", "fp32"),
            int(coords.get("freeze", 0)), batch, epochs))

        losses, first_step, samples, timing = common.timed_training(
            backend.step, dataset, batch, epochs, seed, settings, protocol, backend.prepare)
        rss_peak = memory.peak_rss_bytes()
        own, series = backend.measurements(samples)
        evaluation = backend.evaluate(dataset) if epochs > 0 else {}
        description = backend.describe()

    train_size = int(settings.get("train_size", len(dataset.y_train)))
    records, invalid = common.step_records(samples, batch, protocol, flops, train_size)
    records = [("first_step", first_step, "s")] + records + own
    records += memory_records(rss_baseline, rss_peak)
    loss, invalid = common.loss_outcome(losses, invalid)
    records += loss
    for name in sorted(evaluation):
        records.append((name, float(evaluation[name]), "ratio"))
    if "accuracy" in evaluation:
        common.progress("accuracy {:.4f} after {} steps".format(evaluation["accuracy"],
                                                                 len(losses)))
    samples_out = {"step_time": {"unit": "s", "values": samples},
                   "loss": {"unit": "nat", "values": losses}}
    samples_out.update(series)
    return {
        "records": records,
        "invalid": invalid,
        "samples": samples_out,
        "timing": timing,
        "settings": dict(description["settings"], epochs=epochs, data=dataset.describe()),
        "versions": description["versions"],
    }
