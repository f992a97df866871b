"""The mini Caffe oracle as shipped (tests/data/caffe-oracle): it restores to exactly the files its MANIFEST
names, each with the full oracle's sha256, and a restore whose bytes would differ is refused."""
import json
import shutil
import zipfile

import pytest

import mini_oracle


def test_the_shipped_set_restores_to_the_manifest(tmp_path):
    manifest = json.loads((mini_oracle.MINI / "MANIFEST.json").read_text())["files"]
    out = mini_oracle.restore(mini_oracle.MINI, tmp_path)
    restored = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert restored == set(manifest) | {"README.md"}
    for rel, entry in manifest.items():
        if "members" in entry:   # a re-zipped .npz: exactly the arrays pinned, the documented subset
            with zipfile.ZipFile(out / rel) as z:
                assert sorted(z.namelist()) == sorted(entry["members"])
            if "subset" in entry:
                assert entry["subset"]["kept"] == len(entry["members"]) < entry["subset"]["of"]
        else:
            assert (out / rel).stat().st_size == entry["size"], rel
    # every file the generator drew is there again: the weights and inputs of all nets, the protocol models
    drawn = [rel for rel, e in manifest.items() if e["stored"] in ("drawn", "drawn_input")]
    assert len(drawn) == 5 * 2 + 2 * 5


@pytest.mark.parametrize("tamper", ["seed", "member"])
def test_a_restore_that_differs_from_caffes_bytes_is_refused(tmp_path, tamper):
    src = tmp_path / "mini"
    shutil.copytree(mini_oracle.MINI, src)
    manifest_path = src / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text())
    files = manifest["files"]
    if tamper == "seed":
        rel = "nets/adiencenet_age/weights.caffemodel"
        files[rel]["seed"] += 1
    else:
        rel = "nets/caffenet_age/blobs.npz"
        files[rel]["members"]["conv1.npy"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    (tmp_path / "out").mkdir()
    with pytest.raises(ValueError, match=f"{rel}: restored bytes differ from the oracle's"):
        mini_oracle.restore(src, tmp_path / "out")


def test_restore_command_writes_the_files_and_refuses_a_used_folder(tmp_path, capsys):
    """``python tests/mini_oracle.py DIR`` (the README's way to get the quick start's net)."""
    import mini_oracle
    dst = tmp_path / "oracle"
    assert mini_oracle.main([str(dst)]) == 0
    assert (dst / "nets" / "adiencenet_age" / "weights.caffemodel").stat().st_size == 723_162
    assert mini_oracle.main([str(dst)]) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err
