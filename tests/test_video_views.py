"""Video UNets in every view: what each view says of SVD and AnimateDiff is what they are (an image embedding for
SVD's context, motion modules' buffers not counted as parameters, …), checked against diffusers' own modules."""

from __future__ import annotations


def test_svds_context_is_an_image_embedding_of_one_token(invoke):
    """The header said "text 1 tokens" for SVD, whose context is the CLIP image embedding of the first frame."""
    result = invoke("summary", "svd", "--latent", "8", "--frames", "2")
    assert result.exit_code == 0, result.output
    heading = result.stdout.splitlines()[0]
    assert "image embedding, 1 token" in heading and "text" not in heading
    result = invoke("summary", "tiny", "--text-len", "1")
    assert "text 1 token ·" in result.stdout.splitlines()[0]
