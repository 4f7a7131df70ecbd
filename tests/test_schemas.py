"""Our XSDs: one per catalogue row, compiling, matching the catalogue, and agreeing with
the shared samples and (where one is published) the published schema."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest
import xmlschema
from lxml import etree

from gateway.errors import PaygateError
from gateway.messages import codec, envelope, xml
from gateway.messages.examples import EXAMPLES
from message_schemas import catalogue

SHARED = Path(__file__).resolve().parents[2] / "shared" / "cnaps"
REFERENCE = SHARED / "reference-xsd"
SAMPLES = sorted((SHARED / "samples").glob("*.xml")) if SHARED.is_dir() else []
# hvps.111 and hvps.112 travel as stock ISO documents (SPEC.md a.3).
ISO_SCHEMA = {"hvps.111.001.01": "pacs.008.001.02", "hvps.112.001.01": "pacs.009.001.02"}
CODES = sorted(catalogue.CATALOGUE)
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared is not present")


@lru_cache(maxsize=None)
def reference(code: str) -> etree.XMLSchema | None:
    path = REFERENCE / f"{ISO_SCHEMA.get(code, code)}.xsd"
    return etree.XMLSchema(etree.parse(str(path))) if path.is_file() else None


@pytest.mark.parametrize("code", CODES)
def test_every_row_has_a_schema_that_lxml_and_xmlschema_compile(code: str) -> None:
    """Each catalogue type has an XSD file that both validators accept as a schema."""
    row = catalogue.get(code)

    compiled = catalogue.schema(code)
    other = xmlschema.XMLSchema(catalogue.xsd_path(code))

    assert isinstance(compiled, etree.XMLSchema)
    assert other.target_namespace == row.namespace


@pytest.mark.parametrize("code", CODES)
def test_example_has_the_catalogue_namespace_and_root(code: str) -> None:
    """A built message's Document is in the row's namespace with the row's root under it."""
    row = catalogue.get(code)

    root = xml.parse(codec.build_body(code, EXAMPLES[code]()))

    assert etree.QName(root).namespace == row.namespace
    assert etree.QName(root[0]).localname == row.root
    assert catalogue.schema(code).validate(root), catalogue.schema(code).error_log


def test_namespaces_are_unique_and_lookups_agree() -> None:
    """Every namespace maps back to its own row, and unknown ones are refused by name."""
    for code in CODES:
        assert catalogue.by_namespace(catalogue.get(code).namespace).code == code

    with pytest.raises(PaygateError) as refused:
        catalogue.by_namespace("urn:example:not-cnaps")

    assert refused.value.code == "message_namespace_unknown"


@needs_shared
@pytest.mark.parametrize("code", CODES)
def test_published_flag_matches_the_published_schemas(code: str) -> None:
    """A row is marked published exactly when a published schema of its type exists."""
    assert catalogue.get(code).published == (reference(code) is not None)


@needs_shared
@pytest.mark.parametrize("code", [c for c in CODES if catalogue.get(c).published])
def test_example_validates_against_the_published_schema(code: str) -> None:
    """What we build for a published type is valid for the published schema too."""
    root = xml.parse(codec.build_body(code, EXAMPLES[code]()))
    schema = reference(code)

    assert schema.validate(root), schema.error_log


@needs_shared
@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_every_sample_validates_against_ours_and_the_published_schema(path: Path) -> None:
    """The shared samples pass our schema and, as a check of the sample, the published one."""
    env = envelope.decode(path.read_bytes())
    root = xml.parse(env.body)

    ours = catalogue.schema(env.header.mesg_type)

    assert ours.validate(root), ours.error_log
    assert reference(env.header.mesg_type).validate(root)


def test_shared_building_blocks_are_not_catalogue_types() -> None:
    """The included pieces (common types) sit beside the type schemas, not as rows."""
    folder = Path(catalogue.xsd_path(CODES[0])).parent
    type_files = {p.name for p in folder.glob("*.xsd") if p.name[:4].isalpha()
                  and p.name.count(".") == 4}

    assert type_files == {catalogue.get(code).xsd for code in CODES}
