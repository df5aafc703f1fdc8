"""polyhead's spaCy factories, registered through the `spacy_factories` entry points.

spaCy imports every entry point of that group whenever it builds a Language (`spacy.blank`, `spacy.load`
of any pipeline, polyhead's or not), so this module imports spaCy alone: the components, with the encoder,
transformers and the heads they run, are imported when a polyhead pipeline is built.
"""

from typing import Any

from spacy.language import Language


@Language.factory("polyhead_encoder", default_config={"batch_size": 64, "precision": "auto"})
def make_encoder(nlp: Language, name: str, batch_size: int, precision: str):
    from polyhead.export.components import PolyheadEncoder

    return PolyheadEncoder(nlp, name, batch_size, precision)


@Language.factory("polyhead_head", default_config={"options": {}, "int8": True})
def make_head(nlp: Language, name: str, options: dict[str, Any], int8: bool):
    from polyhead.export.components import PolyheadHead

    return PolyheadHead(nlp, name, options, int8)


# The factories of pipelines exported before `polyhead_head`: the same component (head.json names the kind).
@Language.factory("polyhead_tagger", default_config={"attr": "pos"})
def make_tagger(nlp: Language, name: str, attr: str):
    from polyhead.export.components import PolyheadHead

    return PolyheadHead(nlp, name, {"attr": attr})


@Language.factory("polyhead_ner")
def make_ner(nlp: Language, name: str):
    from polyhead.export.components import PolyheadHead

    return PolyheadHead(nlp, name)


@Language.factory("polyhead_textcat")
def make_textcat(nlp: Language, name: str):
    from polyhead.export.components import PolyheadHead

    return PolyheadHead(nlp, name)
