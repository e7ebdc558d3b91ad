"""CLIP's BPE tokenizer against token ids checked by hand and with OpenAI's tokenizer."""
import pytest
import torch

from sfp.clip import SimpleTokenizer, tokenize

SOT, EOT = 49406, 49407


@pytest.fixture(scope='module')
def tok():
    return SimpleTokenizer()


def test_vocabulary_layout(tok):
    # 256 byte symbols, 256 word-final byte symbols, 48,894 merges, 2 markers.
    assert tok.vocab_size == 49408
    assert (tok.sot_token, tok.eot_token) == (SOT, EOT)
    # 'a' is byte 97, the 65th printable byte from '!' (33): id 64; word-final +256.
    assert tok.encoder['a'] == 97 - 33 and tok.encoder['a</w>'] == 256 + 97 - 33 == 320
    assert tok.encoder['.</w>'] == 256 + ord('.') - 33 == 269


# Ids below: the simple ones follow from the layout above ('a</w>' 320, '.</w>' 269,
# ',</w>' 267, digits '0'..'9' at 256 + 15.. without </w> when followed by more digits);
# all were checked against OpenAI's reference tokenizer.
CASES = [
    ('a photo of a dog.', [320, 1125, 539, 320, 1929, 269]),
    # Runs of whitespace collapse; case folds; '!!' is one merged symbol.
    ('Hello,   World!!', [3306, 267, 1002, 748]),
    ("it's a cat's toy; they'll go", [585, 568, 320, 2368, 568, 5988, 282, 889, 1342, 861]),
    # Numbers are split into single digits; '.' stays a separate symbol.
    ('3.14', [274, 269, 272, 275]),
    # Accented latin, CJK (byte-level pieces) and an emoji.
    ('café naïve', [15304, 1097, 35689, 563]),
    ('東京', [48338, 21078, 361]),
    ('🚀', [13542]),
    # HTML entities are unescaped twice: '&amp;lt;' -> '&lt;' -> '<'.
    ('&amp;lt;b&amp;gt; &quot;x&quot;', [283, 321, 285, 257, 343, 257]),
    # ftfy repairs mojibake and ligatures before tokenising.
    ('Ã©tÃ©', [3459, 39694]),
    ('ﬁne', [3797]),
    ('  spaced\tout\n', [10336, 538, 620]),
    # A literal end-of-text marker in the text is the marker token.
    ('<|endoftext|> x', [EOT, 343]),
]


@pytest.mark.parametrize('text,ids', CASES)
def test_encode_tricky_strings(tok, text, ids):
    assert tok.encode(text) == ids


def test_decode_round_trip(tok):
    assert tok.decode(tok.encode('A Photo of a DOG.')) == 'a photo of a dog . '
    assert tok.decode(tok.encode('東京 🚀')) == '東京 🚀 '


def test_tokenize_pads_and_marks():
    out = tokenize(['a photo of a dog.', 'Hello,   World!!'])
    assert out.dtype == torch.long and out.shape == (2, 77)
    assert out[0, :8].tolist() == [SOT, 320, 1125, 539, 320, 1929, 269, EOT]
    assert out[0, 8:].eq(0).all()
    assert tokenize('a')[0, :3].tolist() == [SOT, 320, EOT]  # a single string works too


def test_over_long_text():
    text = 'the ' * 80  # 80 tokens + 2 markers > 77
    with pytest.raises(RuntimeError, match='82 tokens.*truncate=True'):
        tokenize(text)
    out = tokenize(text, truncate=True)
    assert out[0, 0] == SOT and out[0, -1] == EOT
    assert out[0, 1:76].eq(518).all()  # 'the</w>'
    assert tokenize(text, context_length=100)[0, 81] == EOT
