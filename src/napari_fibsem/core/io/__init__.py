"""Files as users and other tools have them: images and labels with metadata, class maps, keypoints CSVs, atomic writes."""
