"""The data sets a run can use (config ``data.dataset``): classes,
superclasses and the official archive's name and layout.

Pure Python (no numpy): the Snakefile imports it at parse time.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CLASSES", "DATASETS", "Dataset", "dataset_info"]

CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
# CIFAR-100's fine classes by superclass (the CIFAR web page); the label
# order is the names sorted, as in the archive's meta.
_CIFAR100_SUPERCLASSES: dict[str, tuple[str, ...]] = {
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": (
        "clock", "keyboard", "lamp", "telephone", "television",
    ),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": (
        "bridge", "castle", "house", "road", "skyscraper",
    ),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": (
        "camel", "cattle", "chimpanzee", "elephant", "kangaroo",
    ),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}  # fmt: skip
_CIFAR100_CLASSES = tuple(
    sorted(c for cs in _CIFAR100_SUPERCLASSES.values() for c in cs)
)


@dataclass(frozen=True)
class Dataset:
    """A data set's classes and its official archive's layout."""

    name: str
    label: str  # for messages and figures
    classes: tuple[str, ...]
    archive: str  # the official archive's file name
    official_dir: str  # the archive's top folder
    train_members: tuple[str, ...]  # pickles of the training split, in order
    test_member: str
    meta_member: str
    names_key: bytes  # the class names in the meta pickle
    labels_key: bytes  # the labels in a split's pickle
    # Superclasses (CIFAR-100's coarse labels): names and each class's one.
    superclasses: tuple[str, ...] = ()
    superclass_of: tuple[int, ...] = ()

    @property
    def n_classes(self) -> int:
        return len(self.classes)


DATASETS: dict[str, Dataset] = {
    "cifar10": Dataset(
        name="cifar10",
        label="CIFAR-10",
        classes=CLASSES,
        archive="cifar-10-python.tar.gz",
        official_dir="cifar-10-batches-py",
        train_members=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_member="test_batch",
        meta_member="batches.meta",
        names_key=b"label_names",
        labels_key=b"labels",
    ),
    "cifar100": Dataset(
        name="cifar100",
        label="CIFAR-100",
        classes=_CIFAR100_CLASSES,
        archive="cifar-100-python.tar.gz",
        official_dir="cifar-100-python",
        train_members=("train",),
        test_member="test",
        meta_member="meta",
        names_key=b"fine_label_names",
        labels_key=b"fine_labels",
        superclasses=tuple(_CIFAR100_SUPERCLASSES),
        superclass_of=tuple(
            next(i for i, cs in enumerate(_CIFAR100_SUPERCLASSES.values()) if c in cs)
            for c in _CIFAR100_CLASSES
        ),
    ),
}


def dataset_info(name: str) -> Dataset:
    """The :class:`Dataset` named ``name`` (config ``data.dataset``)."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(
            f"unknown data set {name!r}; known: {', '.join(DATASETS)}"
        ) from None
