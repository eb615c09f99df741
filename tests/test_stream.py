"""A streamed ImageFolder (``streaming: true``) reads the in-memory bundle's images, in its order.

On a generated ImageFolder (PNG files of assorted sizes, RGB and grey): the streamed bundle's bank,
eval set and channel statistics are the in-memory bundle's; every image the loader decodes, in the
training process or in loader processes, is bit-identical to the in-memory row; the sharded sampler
reads each index once per epoch over the workers, in ``World.shard``'s order; and training takes the
same steps (per-step losses, final weights), DeepCluster-v2's per-epoch pass over the whole training
set included. The memory bound is tested in ``tests/test_stream_memory.py``.
"""

import os
import pickle

import numpy as np
import pytest
import torch
import yaml

from er_core.config import ConfigError, TrialConfig
from er_core.data import load_dataset
from er_core.data.bundle import channel_stats
from er_core.data.stream import FileBatches, ImageFiles, ShardedBatchSampler, decode_files
from trainers.distributed import World
from trainers.state import build_state
from trainers.steps import TrainingStep
from trainers.trial_data import dataset_key, load_trial_data

CLASSES, PER_CLASS = 3, 15  # flat layout: every fifth image of a class held out -> 36 train, 9 test


def write_folder(root, classes=CLASSES, per_class=PER_CLASS, seed=0):
    """PNG files of random sizes (10-40 px), one in four saved grey: ``root/c<k>/<i>.png``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for label in range(classes):
        os.makedirs(os.path.join(root, f"c{label}"), exist_ok=True)
        for index in range(per_class):
            height, width = (int(v) for v in rng.integers(10, 40, 2))
            image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
            if index % 4 == 1:
                image = image.convert("L")
            image.save(os.path.join(root, f"c{label}", f"{index:02d}.png"))
    return str(root)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("imagefolder"))


def config_for(root, **changes):
    values = dict(method="simclr", dataset="imagefolder", data_root=root, image_size=16, train_size=32,
                  eval_size=8, data_seed=3, backbone="convnet", batch_size=8, epochs=2, warmup_epochs=1,
                  knn_bank_size=32, knn_k=3, projector_dim=16, projector_hidden_dim=32, num_prototypes=6,
                  lr=0.1, log_every_n_steps=1, device="cpu")
    values.update(changes)
    return TrialConfig(**values)


def test_streamed_bundle_holds_the_in_memory_bank_eval_set_and_statistics(folder):
    memory = load_dataset("imagefolder", root=folder, image_size=16, train_size=32, eval_size=5, seed=3)
    whole = load_dataset("imagefolder", root=folder, image_size=16, train_size=32, eval_size=5, seed=3,
                         streaming=True, bank_size=100)
    bank = load_dataset("imagefolder", root=folder, image_size=16, train_size=32, eval_size=5, seed=3,
                        streaming=True, bank_size=10)
    assert memory.num_train == whole.num_train == bank.num_train == 32  # 36 training files capped at 32
    assert not memory.streaming and bank.streaming and len(bank.train_files) == 32
    assert torch.equal(whole.train_images, memory.train_images)
    assert torch.equal(bank.train_images, memory.train_images[:10])
    assert torch.equal(bank.train_labels, memory.train_labels[:10])
    assert torch.equal(bank.train_files.labels, memory.train_labels)
    for streamed in (whole, bank):
        assert torch.equal(streamed.eval_images, memory.eval_images)
        assert torch.equal(streamed.final_images, memory.final_images)  # the whole test split: 9 images
        assert memory.final_images.shape[0] == 9
        assert streamed.grayscale == memory.grayscale is False
    # channel statistics: the whole split's when the bank is the whole split, else the bank's
    assert whole.mean == memory.mean and whole.std == memory.std
    assert (bank.mean, bank.std) == channel_stats(memory.train_images[:10]) != (memory.mean, memory.std)
    # the fingerprint names the data: same files -> same, another bank or the in-memory bundle -> other
    again = load_dataset("imagefolder", root=folder, image_size=16, train_size=32, eval_size=5, seed=3,
                         streaming=True, bank_size=10)
    assert again.fingerprint() == bank.fingerprint()
    assert len({memory.fingerprint(), whole.fingerprint(), bank.fingerprint()}) == 3


def test_streamed_bundle_ships_its_file_index_not_the_images(folder):
    streamed = load_dataset("imagefolder", root=folder, image_size=32, train_size=32, eval_size=5, seed=3,
                            streaming=True, bank_size=4)
    memory = load_dataset("imagefolder", root=folder, image_size=32, train_size=32, eval_size=5, seed=3)
    image_bytes = 3 * 32 * 32
    tensors = sum(len(pickle.dumps(getattr(streamed, name))) for name in
                  ("train_images", "train_labels", "eval_images", "eval_labels", "test_images", "test_labels"))
    index = len(pickle.dumps(streamed.train_files))
    assert index < 60 * 32  # 32 relative paths, sizes and labels
    assert len(pickle.dumps(streamed)) < tensors + index + 1000
    # the 28 training images past the bank are what the in-memory bundle holds more
    assert len(pickle.dumps(memory)) - (len(pickle.dumps(streamed)) - index) >= (32 - 4) * image_bytes
    files = pickle.loads(pickle.dumps(streamed.train_files))
    assert [files.relative_path(i) for i in range(32)] == [streamed.train_files.relative_path(i) for i in range(32)]
    assert all(not os.path.isabs(files.relative_path(i)) for i in range(32))


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_decodes_the_in_memory_rows_in_the_asked_order(folder, workers):
    memory = load_dataset("imagefolder", root=folder, image_size=16, train_size=32, seed=3)
    streamed = load_dataset("imagefolder", root=folder, image_size=16, train_size=32, seed=3, streaming=True,
                            bank_size=2)
    plan = [[5, 0, 31], [7], [12, 12, 3, 30], list(range(32))]
    source = FileBatches(streamed.train_files, workers=workers)
    try:
        for _ in range(2):  # a second pass over the same persistent loader
            batches = list(source.batches(plan))
            assert [b.shape for b in batches] == [(len(rows), 3, 16, 16) for rows in plan]
            for rows, batch in zip(plan, batches):
                assert batch.dtype == torch.uint8 and torch.equal(batch, memory.train_images[rows])
        first = next(source.batches(plan))  # an abandoned pass is replaced by the next one
        assert torch.equal(first, memory.train_images[plan[0]])
        assert torch.equal(next(source.batches(plan[1:])), memory.train_images[plan[1]])
    finally:
        source.close()
    assert torch.equal(decode_files(streamed.train_files, workers=workers), memory.train_images)


def test_sharded_sampler_reads_each_index_once_per_epoch_in_world_shard_order():
    generator = torch.Generator().manual_seed(0)
    num, batch = 50, 8  # 6 full batches, 2 images left out of the epoch (as in memory)
    orders = [torch.randperm(num, generator=generator) for _ in range(2)]
    assert not torch.equal(orders[0], orders[1])  # a new epoch draws a new order
    for order in orders:
        ranks = [list(ShardedBatchSampler(order, batch, rank=rank, world_size=2)) for rank in range(2)]
        assert [len(shards) for shards in ranks] == [6, 6]
        for step in range(6):
            global_batch = order[step * batch:(step + 1) * batch]
            for rank in range(2):
                assert ranks[rank][step] == World(rank, 2).shard(global_batch).tolist()
            assert not set(ranks[0][step]) & set(ranks[1][step])
            assert ranks[0][step] + ranks[1][step] == global_batch.tolist()
        read = [index for shards in ranks for shard in shards for index in shard]
        assert sorted(read) == sorted(order[:48].tolist())  # each trained index exactly once
    assert list(ShardedBatchSampler(orders[0], batch)) == [orders[0][s * 8:(s + 1) * 8].tolist() for s in range(6)]
    with pytest.raises(ValueError, match="does not split over 3 workers"):
        ShardedBatchSampler(orders[0], 8, rank=0, world_size=3)
    with pytest.raises(ValueError, match="rank must be in 0..1"):
        ShardedBatchSampler(orders[0], 8, rank=2, world_size=2)


def test_two_ranks_stream_disjoint_shards_of_the_in_memory_batches(folder):
    memory = load_dataset("imagefolder", root=folder, image_size=16, train_size=32, seed=3)
    streamed = load_dataset("imagefolder", root=folder, image_size=16, train_size=32, seed=3, streaming=True,
                            bank_size=2)
    order = torch.randperm(32, generator=torch.Generator().manual_seed(5))
    seen = []
    for rank in range(2):
        sampler = ShardedBatchSampler(order, 8, rank=rank, world_size=2)
        source = FileBatches(streamed.train_files, workers=1)
        try:
            for step, (rows, images) in enumerate(zip(sampler, source.batches(sampler))):
                shard = World(rank, 2).shard(order[step * 8:(step + 1) * 8])
                assert torch.equal(images, memory.train_images[shard])
                seen += rows
        finally:
            source.close()
    assert sorted(seen) == list(range(32))


class LossWriter:
    def __init__(self):
        self.losses = []

    def step_scalars(self, step, **values):
        self.losses.append(values["loss"])


def train(config, data):
    """Per-step losses of ``config.epochs`` epochs and the final weights."""
    torch.manual_seed(0)
    state = build_state(config, data)
    step, writer = TrainingStep(state, data), LossWriter()
    try:
        for epoch in range(1, config.epochs + 1):
            assert not step.run_epoch(epoch, writer).diverged
    finally:
        step.close()
    return writer.losses, [p.detach().clone() for p in state.net.parameters()]


@pytest.mark.parametrize("method, workers", [("simclr", 0), ("simclr", 2), ("deepcluster", 1)])
def test_streamed_training_takes_the_in_memory_steps(folder, method, workers):
    """Same per-step losses and final weights, streamed or in memory (DeepCluster-v2 also embeds the
    whole training set every epoch through the loader)."""
    torch.set_num_threads(1)
    memory_config = config_for(folder, method=method)
    streamed_config = memory_config.replace(streaming=True, loader_workers=workers)
    memory, streamed = load_trial_data(memory_config), load_trial_data(streamed_config)
    assert streamed.streaming and not memory.streaming
    expected_losses, expected_weights = train(memory_config, memory)
    losses, weights = train(streamed_config, streamed)
    assert len(losses) == 2 * (32 // 8)
    assert losses == expected_losses
    assert all(torch.equal(a, b) for a, b in zip(weights, expected_weights))


def test_a_step_that_asks_for_other_rows_than_the_stream_holds_fails_loudly(folder):
    config = config_for(folder, streaming=True, loader_workers=0)
    data = load_trial_data(config)
    step = TrainingStep(build_state(config, data), data)
    step._read([[0, 1]])
    with pytest.raises(RuntimeError, match="out of step"):
        step.views(torch.tensor([1, 0]))


def test_dataset_key_separates_streamed_bundles_by_bank():
    base = TrialConfig(dataset="imagefolder", data_root="/data/x")
    keys = {dataset_key(base), dataset_key(base.replace(streaming=True)),
            dataset_key(base.replace(streaming=True, knn_bank_size=100))}
    assert len(keys) == 3
    assert dataset_key(base.replace(streaming=True, loader_workers=7)) == dataset_key(base.replace(streaming=True))
    assert dataset_key(base.replace(knn_bank_size=100)) == dataset_key(base)  # in memory: unchanged


def test_streaming_config_is_validated():
    with pytest.raises(ConfigError, match="streaming=True is not available for dataset 'shapes'.*allowed: "
                                          "streaming true for imagefolder"):
        TrialConfig(streaming=True)
    with pytest.raises(ConfigError, match=r"loader_workers=-1 is out of range; allowed: >= 0"):
        TrialConfig(loader_workers=-1)
    with pytest.raises(ConfigError, match="loader_workers must be an integer"):
        TrialConfig().with_overrides(["loader_workers=two"])
    assert TrialConfig().with_overrides(["dataset=imagefolder", "streaming=true", "loader_workers=3"]).loader_workers == 3


@pytest.mark.parametrize("data, key, fragment", [
    ({"dataset": "shapes", "streaming": True}, "data.streaming", "allowed: streaming true for imagefolder"),
    ({"streaming": "sometimes"}, "data.streaming", "must be a boolean"),
    ({"loader_workers": -2}, "data.loader_workers", "allowed: >= 0"),
    ({"loader_workers": 1.5}, "data.loader_workers", "must be an integer"),
])
def test_bad_streaming_keys_exit_2_naming_file_and_key(tmp_path, capsys, folder, data, key, fragment):
    from er_tune.cli import main

    document = yaml.safe_load(open(os.path.join(os.path.dirname(__file__), "..", "search_spaces", "studies",
                                                "smoke.yaml")).read())
    document["tune"] = {"lr": document["tune"]["lr"]}
    document["data"] = {**document.get("data", {}), "dataset": "imagefolder", "root": folder, **data}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(document))
    assert main(["validate", str(path)]) == 2
    error = capsys.readouterr().err
    assert f"{path}: {key}" in error and fragment in error, error


def test_image_files_digest_names_paths_sizes_and_labels(tmp_path):
    root = write_folder(tmp_path / "a", classes=2, per_class=3)
    files = [(os.path.join(root, f"c{c}", f"{i:02d}.png"), c) for c in range(2) for i in range(3)]
    index = ImageFiles.from_samples(root, files, 8)
    assert index.relative_path(4) == os.path.join("c1", "01.png") and len(index) == 6
    assert index.sizes.tolist() == [os.path.getsize(path) for path, _ in files]
    moved = str(tmp_path / "b")
    os.rename(root, moved)
    assert ImageFiles.from_samples(moved, [(p.replace(root, moved), c) for p, c in files], 8).digest() == index.digest()
    relabelled = ImageFiles(moved, [index.relative_path(i) for i in range(6)], [0] * 6, 8)
    resized = ImageFiles(moved, [index.relative_path(i) for i in range(6)], index.labels.tolist(), 16)
    assert len({index.digest(), relabelled.digest(), resized.digest()}) == 3
