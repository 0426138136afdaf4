"""Face detection math for the S3FD-style heads of a detection :class:`~rnnpool_nas.arch.ArchSpec`.

One concept per module: ``anchors`` (where each prediction looks), ``boxes`` (IoU, SSD box
encoding), ``match`` (S3FD scale-compensation matching), ``loss`` (multibox loss with hard
negative mining), ``nms`` (scores, decoding, greedy NMS) and ``ap`` (VOC-style AP and the
official WIDER FACE protocol). Boxes are ``(x1, y1, x2, y2)`` in the network's input pixels
throughout (anchors ``(cx, cy, w, h)``); training-time code is torch, evaluation numpy.
Independent of the data loaders: everything takes arrays of boxes.

Typical use::

    anchors = anchors_for(spec)                               # (A, 4)
    loc, conf = model(images)                                 # (N, A, 4), (N, A, 2)
    loss = multibox_loss(loc, conf, anchors, match_anchors(anchors, faces)).total
    dets = decode_detections(loc, conf, anchors)              # [(boxes, scores)] per image
    curve = average_precision(dets, faces)                    # curve.ap
"""

from .anchors import anchors_for
from .ap import (
    PRCurve,
    WiderImage,
    average_precision,
    images_with_at_most,
    load_wider_ground_truth,
    voc_ap,
    wider_face_eval,
)
from .boxes import VARIANCES, box_iou, cxcywh_to_xyxy, decode, encode, xyxy_to_cxcywh
from .loss import MultiBoxLoss, hard_negatives, multibox_loss
from .match import Matches, match_anchors
from .nms import decode_detections, face_scores, nms

__all__ = [
    "MultiBoxLoss", "Matches", "PRCurve", "VARIANCES", "WiderImage", "anchors_for", "average_precision",
    "box_iou", "cxcywh_to_xyxy", "decode", "decode_detections", "encode", "face_scores", "hard_negatives",
    "images_with_at_most", "load_wider_ground_truth", "match_anchors", "multibox_loss", "nms", "voc_ap",
    "wider_face_eval", "xyxy_to_cxcywh",
]
