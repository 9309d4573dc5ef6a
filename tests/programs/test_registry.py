import dspy
import pytest

from optimizers.compile import FORMAT, save_compiled
from programs.clh import CodeLikeHumans
from programs.errors import ProgramFileError
from programs.medcoder import MedCoder
from programs.registry import build_program, default_program, load_program
from programs.verify import Verify


def test_programs_by_name(kb):
    assert isinstance(load_program("medcoder", kb), MedCoder)
    assert isinstance(load_program("clh", kb), CodeLikeHumans)
    assert isinstance(load_program("verify", kb), Verify)
    with pytest.raises(ProgramFileError, match="medcoder"):
        load_program("nonsense", kb)


def test_compiled_file_loads_its_state(kb, tmp_path):
    program = build_program("medcoder", kb)
    program.rerank.demos = [dspy.Example(diagnosis="htn", evidence="HTN.", candidates=["I10: x"], code="I10", rationale="r")]
    path = save_compiled(tmp_path / "m.json", "medcoder", program, {"format": FORMAT, "kb_release": kb.release_name()})
    loaded = load_program(path, kb)
    assert isinstance(loaded, MedCoder) and loaded.kb is kb
    assert loaded.rerank.demos[0]["code"] == "I10"
    assert loaded.extract.demos == []


def test_compiled_file_for_another_release_is_refused(kb, tmp_path):
    from optimizers.compile import CompiledFileError

    path = save_compiled(tmp_path / "m.json", "clh", build_program("clh", kb), {"format": FORMAT, "kb_release": "ICD-10-CM 1999"})
    with pytest.raises(CompiledFileError, match="1999"):
        load_program(path, kb)


def test_default_program_prefers_a_shipped_compiled_file(tmp_path, monkeypatch):
    import programs.registry as registry

    monkeypatch.setattr(registry, "COMPILED_DIR", tmp_path)
    assert default_program("local") == "clh"
    (tmp_path / "local.json").write_text("{}")
    assert default_program("local:/models/x.gguf") == str(tmp_path / "local.json")
    assert default_program("openai/gpt-4o-mini") == "clh"


def test_every_shipped_compiled_program_loads_with_demos_for_every_stage(kb):
    from programs.registry import COMPILED_DIR

    shipped = sorted(COMPILED_DIR.glob("*.json"))
    assert shipped
    for path in shipped:
        program = load_program(path, kb)
        for name, predictor in program.named_predictors():
            assert predictor.demos, f"{path.name}: stage {name} has no demos"
            for field, info in predictor.signature.fields.items():
                assert info.json_schema_extra["prefix"].rstrip(":").lower().replace(" ", "_") == field, (path.name, name)
