"""`ModelFileError`: one line naming the file, what is wrong and the fix; still a ValueError."""

from __future__ import annotations

import pytest

from mobileprune.runtime.errors import ModelFileError, RuntimeNotFoundError


def test_model_file_error_is_one_line_with_source_reason_and_fix():
    error = ModelFileError("m.tflite", "the file is empty")
    assert str(error) == "m.tflite could not be loaded: the file is empty; re-export it with mobileprune.export_tflite"
    assert (error.source, error.reason) == ("m.tflite", "the file is empty")
    custom = ModelFileError("<bytes>", "bad magic", fix="pass a .tflite file")
    assert str(custom).endswith("; pass a .tflite file") and "\n" not in str(custom)
    with pytest.raises(ValueError):  # callers that catch ValueError keep working
        raise custom


def test_runtime_not_found_is_an_import_error():
    assert issubclass(RuntimeNotFoundError, ImportError)
