"""Tasks named by the user and read from any field: CoNLL-U columns, several columns of one file, edit
scripts for lemmas, and the one-line errors for fields that are not there or not well-formed."""

from pathlib import Path

import pytest
from conftest import write

from polyhead.data.datamodule import CorpusSpec, MultitaskDataModule
from polyhead.data.edit_scripts import apply_script, edit_script
from polyhead.data.schema import CorpusError

EWT_TRAIN = Path(__file__).parents[2] / ".." / "shared" / "data" / "ud_en_ewt" / "en_ewt-ud-train.conllu"

CONLLU = """# sent_id = news-1
# text = The cats sat.
1\tThe\tthe\tDET\tDT\tDefinite=Def|PronType=Art\t2\tdet\t_\t_
2\tcats\tcat\tNOUN\tNNS\tNumber=Plur\t3\tnsubj\t_\t_
3\tsat\tsit\tVERB\tVBD\tMood=Ind|Tense=Past|VerbForm=Fin\t0\troot\t_\tSpaceAfter=No
4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_

# sent_id = blog-2
# text = Rice@ENRON wrote
1-2\tRice@ENRON\t_\t_\t_\t_\t_\t_\t_\t_
1\tRice\tRice\tPROPN\tNNP\tNumber=Sing\t3\tnsubj\t_\t_
2\t@ENRON\t_\tX\t_\t_\t1\tgoeswith\t_\t_
3\twrote\twrite\tVERB\tVBD\tMood=Ind|Tense=Past|VerbForm=Fin\t0\troot\t_\t_
"""


def spec(path, tasks, **options):
    return CorpusSpec(path=str(path), format="conllu", tasks=tasks, options=options)


def test_tasks_readers_conllu_columns_each_to_the_task_that_names_them(tmp_path):
    path = write(tmp_path, "t.conllu", CONLLU)
    tasks = {
        "upos": "upos",
        "xpos": "xpos",
        "morph": "feats",
        "lemma": "lemma",
        "deps": "tree",
        "genre": "cats",
    }
    first, second = spec(path, tasks, cat_from="sent_id_prefix").read()
    assert first.get("upos") == ["DET", "NOUN", "VERB", "PUNCT"]
    assert first.get("xpos") == ["DT", "NNS", "VBD", "."]
    assert first.get("morph") == [
        "Definite=Def|PronType=Art",
        "Number=Plur",
        "Mood=Ind|Tense=Past|VerbForm=Fin",
        "_",
    ]
    assert first.get("lemma") == ["the", "cat", "sit", "."]
    assert first.get("deps") == ([2, 3, 0, 3], ["det", "nsubj", "root", "punct"])
    assert first.get("genre") == ("news",) and second.get("genre") == ("blog",)
    assert {task: g.kind for task, g in first.gold.items()} == {
        "upos": "tags",
        "xpos": "tags",
        "morph": "feats",
        "lemma": "lemmas",
        "deps": "tree",
        "genre": "cats",
    }
    # UD's "_" in XPOS and LEMMA leaves that word unannotated (masked), not labelled "_"
    assert second.get("xpos") == ["NNP", None, "VBD"] and second.get("lemma") == ["Rice", None, "write"]


def test_tasks_readers_two_tasks_may_read_one_field_and_a_list_keeps_the_old_names(tmp_path):
    path = write(tmp_path, "t.conllu", CONLLU)
    (ex, _) = spec(path, {"pos": "upos", "pos_again": "upos"}).read()
    assert ex.get("pos") == ex.get("pos_again") == ["DET", "NOUN", "VERB", "PUNCT"]
    (old, _) = spec(
        path, ["tagger", "parser"], tag_column="xpos", head_column="head", deprel_column="deprel"
    ).read()
    assert set(old.gold) == {"tagger", "parser"} and old.get("tagger") == ["DT", "NNS", "VBD", "."]


@pytest.mark.parametrize(
    ("column", "value", "tasks", "message"),
    [
        (5, "Number", {"m": "feats"}, "t.conllu:4: FEATS 'Number' is not Feature=Value pairs"),
        (5, "Number=Sing||Tense=Past", {"m": "feats"}, "t.conllu:4: FEATS 'Number=Sing||Tense=Past'"),
        (2, "", {"l": "lemma"}, "t.conllu:4: empty lemma"),
    ],
)
def test_tasks_readers_conllu_bad_column_is_one_line_naming_file_and_line(
    tmp_path, column, value, tasks, message
):
    lines = CONLLU.split("\n")
    cols = lines[3].split("\t")
    cols[column] = value
    lines[3] = "\t".join(cols)
    path = write(tmp_path, "t.conllu", "\n".join(lines))
    with pytest.raises(CorpusError) as err:
        spec(path, tasks).read()
    assert message in str(err.value) and "\n" not in str(err.value)


def test_tasks_readers_unknown_field_and_a_list_naming_a_new_task_are_config_errors(tmp_path):
    path = write(tmp_path, "t.conllu", CONLLU)
    with pytest.raises(ValueError, match="CoNLL-U has no field 'upsos'"):
        spec(path, {"pos": "upsos"}).read()
    with pytest.raises(ValueError, match=r"task 'xpos' needs its field: tasks \{xpos: <field>\}"):
        spec(path, ["xpos"])


COLUMNS = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O
. . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
"""


def test_tasks_readers_one_column_file_gives_a_task_per_column_at_its_lines(tmp_path):
    path = write(tmp_path, "c.txt", COLUMNS)
    tasks = {"pos": "1", "chunk": "2:iob2", "ner": "3:iob2"}
    first, second = CorpusSpec(path=str(path), format="columns", tasks=tasks).read()
    assert first.source.endswith("c.txt:3") and second.source.endswith("c.txt:9")
    assert first.get("pos") == ["NNP", "VBZ", "JJ", "NN", "."]
    assert first.get("chunk") == [(0, 1, "NP"), (1, 2, "VP"), (2, 4, "NP")]
    assert first.get("ner") == [(0, 1, "ORG"), (2, 3, "MISC")]
    assert second.get("ner") == [(0, 2, "PER")] and second.get("chunk") == [(0, 2, "NP")]


def test_tasks_readers_column_beyond_the_line_names_the_line(tmp_path):
    path = write(tmp_path, "c.txt", COLUMNS)
    with pytest.raises(CorpusError, match=r"c.txt:3: expected at least 5 columns, found 4"):
        CorpusSpec(path=str(path), format="columns", tasks={"x": "4"}).read()


def test_tasks_readers_one_task_fed_two_kinds_is_an_error_naming_the_file(tmp_path):
    conllu = write(tmp_path, "t.conllu", CONLLU)
    cols = write(tmp_path, "c.txt", COLUMNS)
    dm = MultitaskDataModule(
        train=[
            {"path": str(conllu), "format": "conllu", "tasks": {"x": "upos"}},
            {"path": str(cols), "format": "columns", "tasks": {"x": "3:iob2"}},
        ],
        dev=[{"path": str(conllu), "format": "conllu", "tasks": {"x": "upos"}}],
        test=[],
    )
    with pytest.raises(CorpusError, match=r"c.txt:3: task 'x' is spans here but tags in .*t.conllu:1"):
        dm.load()


@pytest.mark.parametrize(
    ("form", "lemma"),
    [
        ("Running", "run"),
        ("went", "go"),
        ("The", "the"),
        ("studies", "study"),
        ("mice", "mouse"),
        ("unhappy", "happy"),
        ("USA", "USA"),
        ("STEVENS", "Stevens"),
        ("19,250,000", "19250000"),
        ("e-mail", "email"),
        ("a|b", "a"),
        ("İ", "i"),
        ("", "x"),
        ("x", ""),
    ],
)
def test_tasks_readers_edit_script_turns_the_form_into_the_lemma(form, lemma):
    assert apply_script(edit_script(form, lemma), form) == lemma


def test_tasks_readers_edit_script_does_not_depend_on_the_forms_casing():
    assert edit_script("The", "the") == edit_script("the", "the") == edit_script("THE", "the")
    assert edit_script("I", "I") == edit_script("i", "I")  # an uncased encoder cannot tell them apart
    assert edit_script("Running", "run") == edit_script("running", "run")  # a lower-case lemma: one label
    assert edit_script("Hidden", "Hidden") == "f=" and apply_script("f=", "hidden") == "hidden"  # a name
    assert apply_script(edit_script("iPhone", "iPhone"), "iPhone") == "iPhone"  # mixed case: kept as is


def test_tasks_readers_edit_script_is_one_label_for_names_in_capitals_and_for_separated_numbers():
    assert edit_script("STEVENS", "Stevens") == edit_script("KENNEDY", "Kennedy") == "c="  # not one k each
    assert edit_script("Stevens", "Stevens") == "f="  # the form's case where it gives the lemma
    assert edit_script("256,000", "256000") == edit_script("19,250,000", "19250000") == "d,"
    assert apply_script("d,", "1,000,000") == "1000000" and apply_script("d,", "1000") is None
    assert edit_script("1,5", "15,") != "d,"  # the separator must be gone, not moved


def test_tasks_readers_edit_script_that_does_not_fit_a_word_gives_none():
    script = edit_script("sitting", "sit")  # cut "ting"
    assert apply_script(script, "walking") is None
    assert apply_script(edit_script("studies", "study"), "flies") == "fly"  # a rule learnt once, reused
    assert apply_script(edit_script("went", "go"), "ran") is None  # a whole-word rewrite is that word's


@pytest.mark.slow
@pytest.mark.skipif(not EWT_TRAIN.is_file(), reason="UD English EWT is not in ../shared/data")
def test_tasks_readers_edit_scripts_round_trip_every_ewt_training_word():
    spec_ = CorpusSpec(path=str(EWT_TRAIN), format="conllu", tasks={"lemma": "lemma"})
    pairs = [(w, lemma) for ex in spec_.read() for w, lemma in zip(ex.words, ex.get("lemma")) if lemma]
    assert len(pairs) > 200_000
    wrong = [(w, lemma) for w, lemma in pairs if apply_script(edit_script(w, lemma), w) != lemma]
    assert wrong == []
    assert len({edit_script(w, lemma) for w, lemma in pairs}) < 1_000  # scripts generalise: few labels
