"""Node images that cannot be made: an import that fails names the image and ends with ctr's
own last lines; a host Python other than the images' is refused before pip runs."""

import pytest

from llmops_sandbox.nodeimages import BuiltImage, ImageError, import_image

FAILING_CTR = """#!/bin/sh
echo "unpacking layers" >&2
echo "ctr: unexpected EOF reading llmops-sim.tar" >&2
exit 1
"""


def test_a_failed_import_names_the_image_and_ends_with_ctrs_output(tmp_path):
    ctr = tmp_path / "ctr"
    ctr.write_text(FAILING_CTR)
    ctr.chmod(0o755)
    image = BuiltImage(tmp_path / "llmops-sim.tar", ("vllm/vllm-openai:v0.33.0", "llmops/vllm-sim:dev"))
    with pytest.raises(ImageError) as failed:
        import_image(image, tmp_path / "containerd.sock", ctr=str(ctr))
    message = str(failed.value)
    assert message.startswith("importing vllm/vllm-openai:v0.33.0, llmops/vllm-sim:dev into ")
    assert message.endswith("unpacking layers\nctr: unexpected EOF reading llmops-sim.tar")


def test_images_are_built_only_by_the_python_they_run():
    from llmops_sandbox.simimage import check_host_python

    check_host_python((3, 11))
    with pytest.raises(ImageError, match=r"run Python 3\.11 .* installed by Python 3\.12 .*fix: run llmops from a "
                                         r"Python 3\.11 environment"):
        check_host_python((3, 12))
