"""Writes a demo faces folder (drawn cartoon faces, one sub-folder per person) for the faces walkthrough.

    python experiments/make_demo_faces.py --out ~/data/demo_faces
    python experiments/faces_cnn.py --data ~/data/demo_faces --seed 0
    python experiments/make_demo_faces.py --out ~/data/new_faces --images_per_person 2 --photo_seed 1

No installed package ships real face photographs and there is no download here, so the faces are
drawn (jaxrec.data.synthetic_faces): each person a fixed face, each image a new pose, lighting, size
(48-100 px), colour or grayscale, and format (JPEG, PNG, PGM, PPM, BMP). --photo_seed draws new
pictures of the same people, to classify with the trained model. With a real collection
(e.g. LFW's lfw-deepfunneled/ folder), pass that folder to faces_cnn.py instead.
"""

import argparse

from jaxrec.data.synthetic_faces import write_faces

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder to create (one sub-folder per person)")
    parser.add_argument("--people", type=int, default=8, help="number of people")
    parser.add_argument("--images_per_person", type=int, default=40, help="images of each person")
    parser.add_argument("--seed", type=int, default=0, help="who the people are")
    parser.add_argument("--photo_seed", type=int, default=0, help="which pictures of them are drawn")
    args = parser.parse_args()
    root = write_faces(args.out, people=args.people, images_per_person=args.images_per_person, seed=args.seed,
                       photo_seed=args.photo_seed)
    print(f"wrote {args.people} people x {args.images_per_person} images to {root}")
