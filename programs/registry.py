"""The coding programs by name, and loading one by name or from a compiled JSON file."""

from __future__ import annotations

from pathlib import Path

from programs.base import CodingProgram
from programs.clh import CodeLikeHumans
from programs.errors import ProgramFileError
from programs.medcoder import MedCoder
from programs.verify import Verify

PROGRAMS: dict[str, type[CodingProgram]] = {
    MedCoder.name: MedCoder,
    CodeLikeHumans.name: CodeLikeHumans,
    Verify.name: Verify,
}
COMPILED_DIR = Path(__file__).with_name("compiled")
DEFAULT_PROGRAM = CodeLikeHumans.name


def build_program(name: str, kb, **options) -> CodingProgram:
    """A hand-written program: 'medcoder', 'clh' or 'verify'."""
    try:
        return PROGRAMS[name](kb, **options)
    except KeyError:
        raise ProgramFileError(
            f"unknown program {name!r}: use one of {', '.join(sorted(PROGRAMS))} or a compiled .json file"
        ) from None


def load_program(name_or_path: str | Path, kb, **options) -> CodingProgram:
    """A program by name, or a compiled JSON file (see `load_compiled_program`)."""
    if str(name_or_path) in PROGRAMS:
        return build_program(str(name_or_path), kb, **options)
    path = Path(name_or_path)
    if path.suffix != ".json":
        raise ProgramFileError(
            f"unknown program {str(name_or_path)!r}: use one of {', '.join(sorted(PROGRAMS))} or a compiled .json file"
        )
    return load_compiled_program(path, kb, **options)


def load_compiled_program(path: Path, kb, **options) -> CodingProgram:
    """The program a compiled JSON file holds, checked whole and refused when made for another
    knowledge-base release or a program this version does not have."""
    from optimizers.compile import apply_compiled, load_compiled

    compiled = load_compiled(path, kb_release=kb.release_name())
    if compiled.program not in PROGRAMS:
        raise ProgramFileError(
            f"{path} holds program {compiled.program!r}, which is not one of {', '.join(sorted(PROGRAMS))}; recompile it"
        )
    return apply_compiled(build_program(compiled.program, kb, **options), compiled, source=path)


def default_program(model: str) -> str:
    """MedCoder for 'none' (its rules score best with no model), the compiled program shipped for
    `model` ('local' -> programs/compiled/local.json), else the default hand-written program."""
    from programs.lm import NONE

    if model == NONE:
        return MedCoder.name
    shipped = COMPILED_DIR / f"{model.split(':')[0].replace('/', '_')}.json"
    return str(shipped) if shipped.is_file() else DEFAULT_PROGRAM
