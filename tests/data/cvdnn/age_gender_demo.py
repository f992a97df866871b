"""Age and gender of every face in a photo, in the style of the OpenCV 4 dnn tutorials: OpenCV's
res10 SSD face detector, then the Levi-Hassner age and gender nets on each face, boxes drawn.
Written for OpenCV 4 (cv2.dnn.readNetFromCaffe); run it under OpenCV 5 with
``python -m converters.cvdnn age_gender_demo.py ...``.  Prints/writes the detections as JSON."""
import argparse
import json

import cv2
import numpy as np

MODEL_MEAN_VALUES = (78.4263377603, 87.7689143744, 114.895847746)
AGE_LIST = ["(0-2)", "(4-6)", "(8-12)", "(15-20)", "(25-32)", "(38-43)", "(48-53)", "(60-100)"]
GENDER_LIST = ["Male", "Female"]

ap = argparse.ArgumentParser()
ap.add_argument("--image", required=True)
ap.add_argument("--face", nargs=2, metavar=("PROTOTXT", "CAFFEMODEL"), required=True)
ap.add_argument("--age", nargs=2, metavar=("PROTOTXT", "CAFFEMODEL"), required=True)
ap.add_argument("--gender", nargs=2, metavar=("PROTOTXT", "CAFFEMODEL"), required=True)
ap.add_argument("--confidence", type=float, default=0.5)
ap.add_argument("--padding", type=int, default=20)
ap.add_argument("--output", help="image with the boxes drawn")
ap.add_argument("--json", help="write the detections here")
args = ap.parse_args()

faceNet = cv2.dnn.readNetFromCaffe(args.face[0], args.face[1])
ageNet = cv2.dnn.readNet(args.age[1], args.age[0])          # weights first: readNet takes either order
genderNet = cv2.dnn.readNet(args.gender[0], args.gender[1])
for net in (faceNet, ageNet, genderNet):
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)

frame = cv2.imread(args.image)
h, w = frame.shape[:2]
blob = cv2.dnn.blobFromImage(cv2.resize(frame, (300, 300)), 1.0, (300, 300), (104.0, 177.0, 123.0))
faceNet.setInput(blob)
detections = faceNet.forward()

faces = []
for i in range(detections.shape[2]):
    confidence = float(detections[0, 0, i, 2])
    if confidence <= args.confidence:
        continue
    box = detections[0, 0, i, 3:7] * np.array([w, h, w, h])
    x1, y1, x2, y2 = box.astype("int")
    face = frame[max(0, y1 - args.padding):min(y2 + args.padding, h - 1),
                 max(0, x1 - args.padding):min(x2 + args.padding, w - 1)]
    record = {"score": confidence, "box": [float(v) for v in detections[0, 0, i, 3:7]],
              "pixels": [int(x1), int(y1), int(x2), int(y2)]}
    if face.size:
        face_blob = cv2.dnn.blobFromImage(face, 1.0, (227, 227), MODEL_MEAN_VALUES, swapRB=False)
        genderNet.setInput(face_blob)
        gender_preds = genderNet.forward()
        ageNet.setInput(face_blob)
        age_preds = ageNet.forward()
        record["gender"] = gender_preds[0].tolist()
        record["age"] = age_preds[0].tolist()
        label = f"{GENDER_LIST[gender_preds[0].argmax()]}, {AGE_LIST[age_preds[0].argmax()]}"
        cv2.rectangle(frame, (int(x1), int(y1)), (int(x2), int(y2)), (0, 255, 0), 2)
        cv2.putText(frame, label, (int(x1), max(int(y1) - 10, 0)), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                    (0, 255, 255), 2, cv2.LINE_AA)
    faces.append(record)

print(f"{len(faces)} faces")
if args.output:
    cv2.imwrite(args.output, frame)
if args.json:
    with open(args.json, "w") as fh:
        json.dump({"opencv": cv2.__version__, "size": [w, h], "faces": faces}, fh)
