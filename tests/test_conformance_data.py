"""The repository's copy of the golden files, tests/conformance (see its
PROVENANCE.md): whole and unchanged in any clone (SHA256SUMS, index.json),
and -- where ../shared exists beside the repository, as in development and
CI -- byte-identical to the files it was copied from, so it cannot drift."""

import ast
import hashlib
import json
import zipfile

import numpy as np
import pytest

import conformance_util as cu

HERE = cu.IN_REPO_CONFORMANCE
SUMS = HERE / "SHA256SUMS"
# files of tests/conformance that are ours, not copies
OWN_FILES = {"SHA256SUMS", "PROVENANCE.md"}


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def listed():
    """{relative path: sha256} from SHA256SUMS."""
    out = {}
    for line in SUMS.read_text().splitlines():
        digest, name = line.split("  ", 1)
        out[name] = digest
    return out


def copied_files(root):
    """Relative paths of the files under ``root`` (the copy or its source)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and p.name not in OWN_FILES)


def test_every_file_matches_its_recorded_sha256():
    sums = listed()
    assert sorted(sums) == copied_files(HERE), "SHA256SUMS and tests/conformance disagree"
    bad = [name for name, digest in sums.items() if sha256(HERE / name) != digest]
    assert not bad, "changed since they were copied: %s" % bad


def npy_header(f):
    """(dtype, shape) of the .npy stream ``f`` from its header alone."""
    version = np.lib.format.read_magic(f)
    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
            else np.lib.format.read_array_header_2_0)
    shape, _fortran, dtype = read(f)
    return dtype, tuple(shape)


@pytest.mark.parametrize("folder", [".", "optim"])
def test_every_file_holds_the_arrays_its_index_lists(folder):
    """Names, dtypes and shapes from each member's .npy header (no array read)."""
    root = HERE / folder
    index = json.loads((root / "index.json").read_text())
    assert sorted(index) == sorted(p.name for p in root.glob("*.npz"))
    for name, entry in index.items():
        # index.json: {"init_L0_w": "float32 (784, 30)", "config_json": "<U975 ()", ...}
        want = {}
        for array, text in entry["arrays"].items():
            dtype, shape = text.split(" ", 1)
            want[array] = (np.dtype(dtype), tuple(ast.literal_eval(shape)))
        with zipfile.ZipFile(root / name) as z:
            found = {}
            for member in z.namelist():
                with z.open(member) as f:
                    found[member[:-len(".npy")]] = npy_header(f)
        assert found == want, name


def test_the_copy_is_the_shared_conformance_data():
    if not cu.SHARED_CONFORMANCE.is_dir():
        pytest.skip("no %s beside the repository to compare the copy with (it exists in "
                    "development and CI)" % cu.SHARED_CONFORMANCE)
    source = copied_files(cu.SHARED_CONFORMANCE)
    assert source == copied_files(HERE), (
        "tests/conformance and %s hold different files: copy again and update "
        "SHA256SUMS and PROVENANCE.md" % cu.SHARED_CONFORMANCE)
    differ = [name for name in source
              if (cu.SHARED_CONFORMANCE / name).read_bytes() != (HERE / name).read_bytes()]
    assert not differ, "tests/conformance differs from %s in %s" % (cu.SHARED_CONFORMANCE,
                                                                     differ)


def test_the_bundled_digits_are_the_shared_mnist_sample():
    if not cu.SHARED_MNIST_DIR.is_dir():
        pytest.skip("no %s beside the repository (it exists in development and CI)"
                    % cu.SHARED_MNIST_DIR)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert (cu.MNIST_DIR / name).read_bytes() == (cu.SHARED_MNIST_DIR / name).read_bytes()
