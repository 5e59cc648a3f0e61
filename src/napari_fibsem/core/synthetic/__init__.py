"""The synthetic FIB-SEM scene generator (layout, objects, texture, render) and synthetic datasets."""
