"""ImageNet-1k classes that depict each PASCAL VOC class, for evidence from official 1000-class heads.

Indices are those of the standard ImageNet-1k class order (sorted WordNet ids, as in timm and
torchvision); every index carries its ImageNet name as a comment. Choices:

* a VOC class gets every ImageNet class whose images show an instance of it, including whole
  objects seen through one typical part or context (``wing`` for aeroplane, ``car wheel`` and
  ``grille`` for car, ``horse cart`` for horse, ``oxcart`` for cow, worn clothing for person);
* look-alikes that VOC's annotation guidelines keep out are left out: airship, tricycle,
  unicycle, jugs, trucks and lorries (fire engine, garbage/tow/trailer truck, moving van),
  streetcar/tram, wild sheep and bovids (bighorn, bison), wolves and foxes, big cats;
* the groups are disjoint, so one ImageNet class never counts as evidence for two VOC classes.

Use :func:`voc_class_map` as ``class_map`` of an evidence method: a VOC class's map is then the
max (or logsumexp) over its ImageNet classes' maps.
"""

from __future__ import annotations

__all__ = ["VOC_CLASSES", "VOC_TO_IMAGENET", "voc_class_map"]

#: The 20 PASCAL VOC object classes in the standard order (label ``i + 1``; 0 is background).
VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)

VOC_TO_IMAGENET: dict[str, tuple[int, ...]] = {
    "aeroplane": (
        404,  # airliner
        895,  # warplane, military plane
        908,  # wing
    ),
    "bicycle": (
        444,  # bicycle-built-for-two, tandem bicycle
        671,  # mountain bike, all-terrain bike
    ),
    "bird": (
        *range(7, 25),  # 7 cock, 8 hen, 9 ostrich, 10 brambling ... 22 bald eagle, 23 vulture, 24 great grey owl
        *range(80, 101),  # 80 black grouse, 81 ptarmigan ... 97 drake, 98 red-breasted merganser, 99 goose, 100 black swan
        *range(127, 147),  # 127 white stork ... 144 pelican, 145 king penguin, 146 albatross
    ),
    "boat": (
        403,  # aircraft carrier
        472,  # canoe
        484,  # catamaran
        510,  # container ship
        554,  # fireboat
        576,  # gondola
        625,  # lifeboat
        628,  # liner, ocean liner
        724,  # pirate, pirate ship
        780,  # schooner
        814,  # speedboat
        833,  # submarine
        871,  # trimaran
        914,  # yawl
    ),
    "bottle": (
        440,  # beer bottle
        720,  # pill bottle
        737,  # pop bottle, soda bottle
        898,  # water bottle
        907,  # wine bottle
    ),
    "bus": (
        654,  # minibus
        779,  # school bus
        874,  # trolleybus, trolley coach
    ),
    "car": (
        407,  # ambulance
        436,  # beach wagon, station wagon
        468,  # cab, taxi
        479,  # car wheel
        511,  # convertible
        581,  # grille, radiator grille
        609,  # jeep, landrover
        627,  # limousine
        656,  # minivan
        661,  # Model T
        717,  # pickup, pickup truck
        734,  # police van
        751,  # racer, race car
        817,  # sports car
    ),
    "cat": (
        281,  # tabby, tabby cat
        282,  # tiger cat
        283,  # Persian cat
        284,  # Siamese cat
        285,  # Egyptian cat
    ),
    "chair": (
        423,  # barber chair
        559,  # folding chair
        765,  # rocking chair
        857,  # throne
    ),
    "cow": (
        345,  # ox
        346,  # water buffalo, water ox
        690,  # oxcart
    ),
    "diningtable": (
        532,  # dining table, board
    ),
    "dog": (
        *range(151, 269),  # 151 Chihuahua, 152 Japanese spaniel ... 267 standard poodle, 268 Mexican hairless
    ),
    "horse": (
        339,  # sorrel
        603,  # horse cart
    ),
    "motorbike": (
        665,  # moped
        670,  # motor scooter, scooter
    ),
    "person": (
        399,  # abaya
        400,  # academic gown
        445,  # bikini, two-piece
        459,  # brassiere, bra
        474,  # cardigan
        568,  # fur coat
        578,  # gown
        601,  # hoopskirt, crinoline
        608,  # jean, blue jean, denim
        610,  # jersey, T-shirt
        614,  # kimono
        617,  # lab coat
        638,  # maillot
        639,  # maillot, tank suit
        652,  # military uniform
        655,  # miniskirt
        689,  # overskirt
        697,  # pajama
        735,  # poncho
        834,  # suit, suit of clothes
        841,  # sweatshirt
        869,  # trench coat
        981,  # ballplayer, baseball player
        982,  # groom, bridegroom
        983,  # scuba diver
    ),
    "pottedplant": (
        738,  # pot, flowerpot
    ),
    "sheep": (
        348,  # ram, tup
    ),
    "sofa": (
        831,  # studio couch, day bed
    ),
    "train": (
        466,  # bullet train
        547,  # electric locomotive
        565,  # freight car
        705,  # passenger car, coach, carriage
        820,  # steam locomotive
    ),
    "tvmonitor": (
        527,  # desktop computer
        598,  # home theater
        664,  # monitor
        782,  # screen, CRT screen
        851,  # television
    ),
}


def voc_class_map() -> list[list[int]]:
    """The ImageNet-1k indices of each VOC class, in :data:`VOC_CLASSES` order (a ``class_map``)."""
    return [list(VOC_TO_IMAGENET[name]) for name in VOC_CLASSES]
