"""atomic_write_bytes: the destination holds the old or the new bytes, never a mix."""

from __future__ import annotations

import os

import pytest

from mobileprune.conversion.atomic import atomic_write_bytes, atomic_write_text


def test_writes_new_file_and_replaces_old(tmp_path):
    target = tmp_path / "a.bin"
    atomic_write_bytes(target, b"first")
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert os.listdir(tmp_path) == ["a.bin"]


def test_failure_mid_write_keeps_old_bytes_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"good model")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "text is not bytes")  # fails inside write()
    assert target.read_bytes() == b"good model"
    assert os.listdir(tmp_path) == ["a.bin"]


def test_permissions_follow_umask(tmp_path):
    umask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "a.json", "{}")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644
    assert path.read_text() == "{}"


def test_explicit_mode_ignores_umask(tmp_path):
    umask = os.umask(0o077)
    try:
        path = atomic_write_bytes(tmp_path / "a.bin", b"x", mode=0o644)
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_missing_directory_and_directory_target(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        atomic_write_bytes(tmp_path / "nope" / "a.bin", b"x")
    with pytest.raises(ValueError, match="is a directory"):
        atomic_write_bytes(tmp_path, b"x")
