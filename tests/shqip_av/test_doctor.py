from shqip_av import doctor


def test_doctor_reports_one_line_per_problem(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("SHQIP_AV_MODELS", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(doctor, "PACKAGES", [("json", "n/a"), ("no_such_module_xyz", "pip install it")])
    code = doctor.main([])
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    assert any(
        line.startswith("PROBLEM python package no_such_module_xyz does not import") and "→ pip install it" in line
        for line in out
    )
    assert any(line.startswith("PROBLEM model file face_landmarker.task not found") for line in out)
    assert any(line.startswith("ok      program ffmpeg") for line in out)
    assert out[-1].endswith("problem(s)")
