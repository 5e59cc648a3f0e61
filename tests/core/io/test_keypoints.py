import pytest

from napari_fibsem.core.io.keypoints import Keypoint, KeypointsError, read_keypoints, write_keypoints


def test_round_trip_with_free_columns(tmp_path):
    pts = [
        Keypoint("a.tif", "NeedleTip", 10.5, 20.25, 2e-8, False, "synthetic"),
        Keypoint("b.tif", "LamellaCentre", 1.0, 2.0, None, True, "person", extra={"checkpoint": "m.pt"}),
    ]
    write_keypoints(tmp_path / "k.csv", pts)
    back = read_keypoints(tmp_path / "k.csv")
    assert back[0] == pts[0]
    assert back[1].extra == {"checkpoint": "m.pt"} and back[1].corrected and back[1].pixel_size is None
    assert back[0].extra == {}  # a free column left empty reads as absent


def test_reads_openfibsem_columns(tmp_path):
    p = tmp_path / "of.csv"
    p.write_text("filename,feature,px.x,px.y,pixelsize,corrected\nimg.tif,NeedleTip,100,200,1.5e-08,True\n")
    (kp,) = read_keypoints(p)
    assert (kp.filename, kp.feature, kp.x, kp.y, kp.pixel_size, kp.corrected) == ("img.tif", "NeedleTip", 100, 200, 1.5e-8, True)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("filename,feature,x\na,b,1\n", "missing column(s) ['y']"),
        ("filename,feature,x,y\na,b,1,oops\n", "line 2: column 'y' is not a number"),
        ("filename,feature,x,y\na,b,1,2\na,b,1,nan\n", "line 3: column 'y' is not finite"),
        ("filename,feature,x,y,corrected\na,b,1,2,maybe\n", "'corrected' must be true/false"),
        ("filename,feature,x,y\na,b,1,2,3\n", "line 2: more values than columns"),
        ("filename,feature,x,y\n,b,1,2\n", "must not be empty"),
    ],
)
def test_malformed_csv_names_file_and_line(tmp_path, text, problem):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(KeypointsError) as e:
        read_keypoints(p)
    assert str(p) in str(e.value) and problem in str(e.value)
