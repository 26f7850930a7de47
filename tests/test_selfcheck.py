from course_utils.selfcheck import check


def test_right_and_wrong(capsys):
    assert check("q", 9, 9)
    assert not check("q", 8, 9, hint="count the taps")
    assert check("arr", [[1, 2]], [[1.0, 2.0]])
    assert not check("shape", [1, 2], [[1, 2]])
    assert not check("bool", 1, True) and check("bool", False, False)
    assert not check("todo", ..., 3)
    out = capsys.readouterr().out
    assert "[right] q" in out and "Hint: count the taps" in out
