"""The `export_dataset` job: the job's data set as an .npz file, for cells in images without
the library that makes it (numpy only, so it runs in every image)."""


def export_dataset(job):
    # type: (Dict[str, Any]) -> Dict[str, Any]
    """The job's data set as an .npz file for jobs in images without the library that makes it."""
    from toolkit.device import data
    from toolkit.device.training.common import load_data

    dataset = load_data(job)
    data.save_npz(dataset, job["artifacts"]["dataset_file"])
    return {"records": [], "dataset": dataset.describe()}
