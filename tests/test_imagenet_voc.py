"""The ImageNet-1k -> PASCAL VOC class map (glmix_vis.data.imagenet_voc), checked against timm's class names."""

from __future__ import annotations

import ast
import inspect
import itertools
import re

import pytest
from timm.data import ImageNetInfo

from glmix_vis.data import imagenet_voc
from glmix_vis.data.imagenet_voc import VOC_FOREGROUND, VOC_TO_IMAGENET, voc_class_map

INFO = ImageNetInfo()
DESCRIPTIONS = [INFO.index_to_description(i) for i in range(1000)]
ENTRY = re.compile(r"^\s*(\d+),\s*#\s*(.*?)\s*$")


def index_of(name: str) -> int:
    """The ImageNet-1k index whose description starts with the synonym ``name`` (must be unique)."""
    hits = [i for i, d in enumerate(DESCRIPTIONS) if d.split(", ")[0] == name]
    assert len(hits) == 1, (name, hits)
    return hits[0]


def commented_entries(source: str) -> list[tuple[int, str]]:
    """``(index, comment)`` for every ``index,  # comment`` line of the VOC_TO_IMAGENET literal in ``source``."""
    tree = ast.parse(source)
    node = next(n for n in tree.body
                if isinstance(n, ast.AnnAssign | ast.Assign)
                and "VOC_TO_IMAGENET" in ast.unparse(n.target if isinstance(n, ast.AnnAssign) else n.targets[0]))
    lines = source.splitlines()[node.lineno - 1:node.end_lineno]
    return [(int(m[1]), m[2]) for m in map(ENTRY.match, lines) if m]


def test_every_voc_class_has_a_group() -> None:
    assert len(VOC_FOREGROUND) == 20 and len(set(VOC_FOREGROUND)) == 20
    assert tuple(VOC_TO_IMAGENET) == VOC_FOREGROUND
    for name in VOC_FOREGROUND:
        assert isinstance(VOC_TO_IMAGENET[name], tuple) and VOC_TO_IMAGENET[name], name
    assert voc_class_map() == [list(VOC_TO_IMAGENET[name]) for name in VOC_FOREGROUND]


def test_indices_are_imagenet_1k_indices() -> None:
    for name, group in VOC_TO_IMAGENET.items():
        for i in group:
            assert type(i) is int and 0 <= i <= 999, (name, i)
        assert len(group) == len(set(group)), f"{name} lists an index twice"


def test_groups_are_pairwise_disjoint() -> None:
    for (a, ga), (b, gb) in itertools.combinations(VOC_TO_IMAGENET.items(), 2):
        shared = set(ga) & set(gb)
        assert not shared, f"{a} and {b} share {[(i, DESCRIPTIONS[i]) for i in sorted(shared)]}"


def test_every_index_is_commented_with_its_timm_description() -> None:
    entries = commented_entries(inspect.getsource(imagenet_voc))
    # one commented line per index, in the dict's order (so no uncommented ranges or bare indices)
    assert [i for i, _ in entries] == [i for group in VOC_TO_IMAGENET.values() for i in group]
    wrong = [(i, comment, DESCRIPTIONS[i]) for i, comment in entries if comment != DESCRIPTIONS[i]]
    assert not wrong, wrong


def test_comment_check_catches_a_wrong_name() -> None:
    """The comment parser used above does see a mislabelled or uncommented index."""
    source = inspect.getsource(imagenet_voc)
    line = f"        {index_of('tricycle')},  # {DESCRIPTIONS[index_of('tricycle')]}"
    assert line in source
    entries = commented_entries(source.replace(line, line.replace("tricycle, trike", "tandem, trike")))
    assert (index_of("tricycle"), "tandem, trike, velocipede") in entries
    entries = commented_entries(source.replace(line, line.split("#")[0].rstrip()))
    assert index_of("tricycle") not in [i for i, _ in entries]


def test_tricycle_and_unicycle_are_bicycles() -> None:
    """VOC2007 guidelines, Bicycle: "Includes tricycles, unicycles"."""
    assert index_of("tricycle") == 870 and index_of("unicycle") == 880
    assert {870, 880} <= set(VOC_TO_IMAGENET["bicycle"])
    assert "Includes tricycles, unicycles" in imagenet_voc.__doc__


def test_docstring_justifies_every_group() -> None:
    doc = imagenet_voc.__doc__
    for name in VOC_FOREGROUND:
        assert f"* {name} (\"" in doc, f"no guideline-quoting line for {name}"


# (VOC class, ImageNet classes that must be in its group, ImageNet classes that must not be in it)
SPOT_CHECKS = [
    ("aeroplane", ["airliner", "warplane", "wing"], ["airship", "space shuttle", "parachute"]),
    ("bicycle", ["bicycle-built-for-two", "mountain bike"], ["jinrikisha", "moped", "motor scooter"]),
    ("bird", ["cock", "ostrich", "great grey owl", "black swan", "king penguin", "albatross"],
     ["birdhouse", "bee", "platypus"]),
    ("boat", ["canoe", "liner", "gondola", "submarine", "yawl"],
     ["paddle", "paddlewheel", "wreck", "dock", "boathouse", "amphibian"]),
    ("bottle", ["wine bottle", "pill bottle", "nipple", "perfume"],
     ["water jug", "whiskey jug", "beer glass", "lotion", "hair spray"]),
    ("bus", ["minibus", "school bus", "trolleybus"], ["streetcar", "recreational vehicle", "moving van"]),
    ("car", ["sports car", "cab", "minivan", "beach wagon", "pickup", "car wheel", "grille"],
     ["ambulance", "police van", "fire engine", "garbage truck", "tow truck", "trailer truck", "moving van",
      "go-kart", "golfcart", "tractor", "car mirror"]),
    ("cat", ["tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"],
     ["cougar", "lynx", "leopard", "snow leopard", "jaguar", "lion", "tiger", "cheetah", "Madagascar cat"]),
    ("chair", ["folding chair", "rocking chair", "barber chair", "throne"], ["park bench", "studio couch"]),
    ("cow", ["ox", "water buffalo", "oxcart"], ["bison", "ram"]),
    ("diningtable", ["dining table"], ["desk", "pool table", "plate", "restaurant"]),
    ("dog", ["Chihuahua", "Mexican hairless"],
     ["timber wolf", "coyote", "dingo", "dhole", "African hunting dog", "hyena", "red fox"]),
    ("horse", ["sorrel", "horse cart"], ["zebra", "jinrikisha"]),
    ("motorbike", ["moped", "motor scooter"], ["crash helmet", "snowmobile", "bicycle-built-for-two"]),
    ("person", ["ballplayer", "groom", "scuba diver", "diaper", "swimming trunks", "bikini", "suit"],
     ["sunglasses", "cowboy hat", "Windsor tie", "running shoe", "balance beam", "mask"]),
    ("pottedplant", ["pot"], ["vase", "greenhouse", "daisy"]),
    ("sheep", ["ram"], ["bighorn", "ibex"]),
    ("sofa", ["studio couch"], ["four-poster", "park bench"]),
    ("train", ["bullet train", "electric locomotive", "steam locomotive", "passenger car", "freight car"],
     ["streetcar"]),
    ("tvmonitor", ["monitor", "television", "screen", "desktop computer"], ["laptop", "notebook", "scoreboard"]),
]


@pytest.mark.parametrize(("voc", "inside", "outside"), SPOT_CHECKS, ids=[c[0] for c in SPOT_CHECKS])
def test_spot_checks(voc: str, inside: list[str], outside: list[str]) -> None:
    group = set(VOC_TO_IMAGENET[voc])
    missing = [n for n in inside if index_of(n) not in group]
    assert not missing, f"{voc} lacks {missing}"
    intruders = [n for n in outside if index_of(n) in group]
    assert not intruders, f"{voc} must not hold {intruders}"


def test_animal_groups_follow_the_guidelines() -> None:
    """Cat and dog are the domestic animals only; bird is every ImageNet bird."""
    assert set(VOC_TO_IMAGENET["cat"]) == set(range(281, 286))  # 286-293: cougar, lynx and the big cats
    assert set(VOC_TO_IMAGENET["dog"]) == set(range(151, 269))  # 269-280: wolves, wild dogs, hyena, foxes
    assert set(VOC_TO_IMAGENET["bird"]) == set(range(7, 25)) | set(range(80, 101)) | set(range(127, 147))
    assert len(VOC_TO_IMAGENET["bird"]) == 59


def test_small_groups_are_as_reviewed() -> None:
    """The one-class groups (and the reviewed person group) are the decisions the docstring justifies."""
    assert VOC_TO_IMAGENET["diningtable"] == (index_of("dining table"),)
    assert VOC_TO_IMAGENET["pottedplant"] == (index_of("pot"),)
    assert VOC_TO_IMAGENET["sheep"] == (index_of("ram"),)
    assert VOC_TO_IMAGENET["sofa"] == (index_of("studio couch"),)
    person = set(VOC_TO_IMAGENET["person"])
    assert {index_of(n) for n in ("ballplayer", "groom", "scuba diver")} <= person
    assert {index_of(n) for n in ("diaper", "sarong", "swimming trunks", "vestment")} <= person
    assert {638, 639} <= person  # both "maillot" classes (swimsuits): the name is not unique
