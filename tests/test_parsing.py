import pytest

from service.execution.parsing import find_metric, last_line_dict

ASSIGNMENT_LINE = "{'i': '0.001', 'j': '2', 'k': '2000', 'images': '/data/x', 'accuracy': 0.342}"


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (ASSIGNMENT_LINE, 0.342),
        ("loading...\nepoch 1 loss=0.3\n" + ASSIGNMENT_LINE + "\n", 0.342),
        ('{"accuracy": 0.93, "loss": 0.1}', 0.93),
        ("accuracy: 0.93", 0.93),
        ("final accuracy=0.93", 0.93),
        ("Accuracy = 93.1%", 0.931),
        ("ACCURACY: 1e-1", 0.1),
        ("{'Accuracy': '88%'}", 0.88),
        ("accuracy: 0.5\naccuracy: 0.7\nbye", 0.7),
        ("accuracy: 0.5\n{'loss': 0.1}", 0.5),
        ("val_accuracy: 0.4", None),
        ("{'accuracy': nan}", None),
        ("{'accuracy': None}", None),
        ("no numbers here", None),
        ("", None),
        ("{'accuracy': __import__('os').system('true')}", None),
    ],
)
def test_find_accuracy(output, expected):
    found = find_metric(output, "accuracy")
    assert found == pytest.approx(expected) if expected is not None else found is None


def test_last_line_dict_reads_python_and_json_and_ignores_noise():
    assert last_line_dict("noise\n{'label': '7', 'confidence': 0.9}\n\n") == {
        "label": "7", "confidence": 0.9}
    assert last_line_dict('{"label": "3"}') == {"label": "3"}
    assert last_line_dict("{'label': '7'}\ntrailing words") == {}
    assert last_line_dict("") == {}
