import importlib.util

import pytest

from goalcraft.data.download import DownloadExtraMissing, download_manifest_videos


@pytest.mark.skipif(importlib.util.find_spec("yt_dlp") is not None, reason="yt-dlp installed: the extra is present")
def test_missing_extra_names_the_install_command(tmp_path):
    (tmp_path / "manifest.jsonl").write_text('{"id": "abc", "duration": 10, "fps": 30, "link": "https://youtu.be/abc"}\n')
    with pytest.raises(DownloadExtraMissing, match=r'pip install -e "\.\[download\]"'):
        download_manifest_videos([tmp_path / "manifest.jsonl"], tmp_path)
