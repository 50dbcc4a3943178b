import pytest
import torch

from core.sequence import Segment, build_example, pack_batch, pad_batch
from core.tokenizers import Vocab

VOCAB = Vocab.build({"text": 100, "image": 50})


def text(*local, **flags):
    return Segment("text", VOCAB.to_global("text", torch.tensor(local)), **flags)


def image(*local, **flags):
    return Segment.tagged(VOCAB, "image", VOCAB.to_global("image", torch.tensor(local)), ("<img>", "</img>"), **flags)


def test_loss_mask_comes_from_target_segments():
    report_to_image = build_example([text(1, 2, 3), image(7, 8, is_target=True)], VOCAB)
    # <bos> t t t <img> i i </img> <eos>
    assert report_to_image.loss_mask.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1]
    image_to_report = build_example([image(7, 8), text(1, 2, 3, is_target=True)], VOCAB)
    assert image_to_report.loss_mask.tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert image_to_report.modality_ids.tolist() == [0, 0, 2, 2, 0, 1, 1, 1, 0]
    assert image_to_report.positions.tolist() == list(range(9))


def test_condition_dropout_replaces_the_condition_by_null():
    example = build_example([text(1, 2, 3, is_condition=True), image(7, is_target=True)], VOCAB, drop_conditions=True)
    assert example.token_ids[1] == VOCAB.special("<null>") and len(example) == 1 + 1 + 3 + 1


def test_segment_with_ids_of_another_modality_is_rejected():
    with pytest.raises(ValueError, match="segment 0 \\('image'\\)"):
        build_example([Segment("image", VOCAB.to_global("text", torch.tensor([1])))], VOCAB)


def test_pad_and_pack():
    a = build_example([text(1, 2, is_target=True)], VOCAB)  # 4 tokens
    b = build_example([text(3, is_target=True)], VOCAB)  # 3 tokens
    padded = pad_batch([a, b], pad_id=0, length=6)
    assert padded.input_ids.shape == (2, 6) and padded.attention_mask.sum(1).tolist() == [4, 3]
    assert padded.document_ids is None and not padded.loss_mask[:, 4:].any()
    packed = pack_batch([a, b, a], pad_id=0, length=8)
    assert packed.input_ids.shape == (2, 8)
    assert packed.positions[0].tolist() == [0, 1, 2, 3, 0, 1, 2, 0]  # restarts per document
    assert packed.document_ids[0].tolist() == [1, 1, 1, 1, 2, 2, 2, 0]
    with pytest.raises(ValueError, match="more than the sequence length 3"):
        pad_batch([a], pad_id=0, length=3)
    # an example whose first token is a target: packed second, it is not predicted from the first document's end
    first = build_example([text(4, is_target=True)], VOCAB)
    first.loss_mask[0] = True
    packed = pack_batch([b, first], pad_id=0, length=8)
    assert packed.document_ids[0].tolist() == [1, 1, 1, 2, 2, 2, 0, 0]
    assert not packed.loss_mask[0, 3] and packed.loss_mask[0, 4]  # its first token is not a target, the next is
