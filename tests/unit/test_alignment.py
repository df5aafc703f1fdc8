import pytest
import torch

from polyhead.tokens.alignment import plan_alignment, pool_windows, pool_words, window_starts

SPECIAL = ([101], [102])


@pytest.mark.parametrize(
    ("n", "window", "stride", "expected"),
    [(3, 4, 2, [0]), (4, 4, 2, [0]), (5, 4, 2, [0, 1]), (9, 4, 2, [0, 2, 4, 5]), (10, 4, 3, [0, 3, 6])],
)
def test_alignment_window_starts_cover_every_piece(n, window, stride, expected):
    starts = window_starts(n, window, stride)
    assert starts == expected
    covered = {i for s in starts for i in range(s, min(n, s + window))}
    assert covered == set(range(n))


def hidden_equal_to_ids(alignment):
    """Hidden state = the piece id itself, so pooled word vectors are checkable by hand."""
    return alignment.input_ids.float().unsqueeze(-1)  # (N, T, 1)


def test_alignment_first_and_mean_pooling_single_window():
    pieces = [[[10], [11, 12, 13], [14]], [[20, 21]]]
    first = plan_alignment(pieces, window=8, stride=4, pooling="first", special=SPECIAL, pad_id=0)
    assert first.input_ids.tolist() == [[101, 10, 11, 12, 13, 14, 102], [101, 20, 21, 102, 0, 0, 0]]
    assert first.word_mask.tolist() == [[True, True, True], [True, False, False]]
    words = pool_words(hidden_equal_to_ids(first), first)[..., 0]
    assert words.tolist() == [[10, 11, 14], [20, 0, 0]]
    mean = plan_alignment(pieces, window=8, stride=4, pooling="mean", special=SPECIAL, pad_id=0)
    assert pool_words(hidden_equal_to_ids(mean), mean)[..., 0].tolist() == [[10, 12, 14], [20.5, 0, 0]]


def test_alignment_long_text_windows_overlap_and_average():
    # 6 one-piece words, window 4, stride 2: windows [0..3], [2..5]; words 2 and 3 are in both.
    pieces = [[[i] for i in range(1, 7)]]
    al = plan_alignment(pieces, window=4, stride=2, pooling="first", special=SPECIAL, pad_id=0)
    assert al.input_ids.tolist() == [[101, 1, 2, 3, 4, 102], [101, 3, 4, 5, 6, 102]]
    assert al.window_text.tolist() == [0, 0]
    hidden = hidden_equal_to_ids(al).clone()
    hidden[1] += 100  # the second window sees words differently: overlap words average both windows
    words = pool_words(hidden, al)[0, :, 0].tolist()
    assert words == [1, 2, 53, 54, 105, 106]
    cls = pool_windows(hidden[:, 0], al)
    assert cls.tolist() == [[151.0]]


def test_alignment_every_word_of_long_text_gets_a_vector():
    pieces = [[[5, 6]] * 2000]  # 4,000 pieces
    al = plan_alignment(pieces, window=60, stride=45, pooling="mean", special=SPECIAL, pad_id=0)
    assert al.input_ids.shape[1] == 62
    counts = torch.zeros(2000).index_add_(0, al.word_index, torch.ones(len(al.word_index)))
    assert bool((counts > 0).all())


def test_alignment_empty_text_and_bad_settings():
    al = plan_alignment([[], [[7]]], window=4, stride=2, pooling="first", special=SPECIAL, pad_id=0)
    assert al.word_mask.tolist() == [[False], [True]]
    with pytest.raises(ValueError, match="pooling"):
        plan_alignment([[[1]]], window=4, stride=2, pooling="last", special=SPECIAL, pad_id=0)
    with pytest.raises(ValueError, match="stride"):
        plan_alignment([[[1]]], window=4, stride=5, pooling="first", special=SPECIAL, pad_id=0)


def plan_reference(pieces, window, stride, pooling, row_len):
    """Every piece walked one by one, window by window: (rows, piece_index against rows of row_len,
    word_index, window_text)."""
    width = max(1, max((len(words) for words in pieces), default=0))
    rows, piece_index, word_index, window_text = [], [], [], []
    for text_i, words in enumerate(pieces):
        flat = [(p, w) for w, word_pieces in enumerate(words) for p in word_pieces]
        for start in window_starts(len(flat), window, stride):
            chunk, seen = flat[start : start + window], set()
            for offset, (_, w) in enumerate(chunk):
                if pooling == "mean" or w not in seen:
                    piece_index.append(len(rows) * row_len + 1 + offset)
                    word_index.append(text_i * width + w)
                seen.add(w)
            rows.append([101] + [p for p, _ in chunk] + [102])
            window_text.append(text_i)
    return rows, piece_index, word_index, window_text


@pytest.mark.parametrize("pooling", ["first", "mean"])
def test_alignment_plan_equals_piece_by_piece_walk_on_random_texts(pooling):
    """Texts of one window take a shortcut past the per-piece walk: the same plan, words without pieces,
    empty texts and texts of several windows included."""
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        pieces = []
        for _ in range(int(torch.randint(1, 6, (1,), generator=gen))):
            n_words = int(torch.randint(0, 12, (1,), generator=gen))
            sizes = torch.randint(0, 4, (n_words,), generator=gen).tolist()
            pieces.append([list(range(1000 * w, 1000 * w + size)) for w, size in enumerate(sizes)])
        al = plan_alignment(pieces, window=8, stride=5, pooling=pooling, special=SPECIAL, pad_id=0)
        rows, piece_index, word_index, window_text = plan_reference(pieces, 8, 5, pooling, 10)
        longest = max(map(len, rows))
        assert al.input_ids.tolist() == [r + [0] * (longest - len(r)) for r in rows]
        assert al.attention_mask.tolist() == [[1] * len(r) + [0] * (longest - len(r)) for r in rows]
        assert al.piece_index.tolist() == [i // 10 * longest + i % 10 for i in piece_index]
        assert al.word_index.tolist() == word_index
        assert al.window_text.tolist() == window_text
