"""Optional: fetch a manifest's YouTube videos and their English captions with yt-dlp.

Needs the ``download`` extra (``pip install -e ".[download]"``). Never used by the tests or the
demo, which run offline on the embedded Crafter corpus. Videos land in ``videos/<id>.mp4`` and
captions in ``transcripts/<id>.en.vtt`` under the corpus root, where the manifest reader finds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from goalcraft.data.manifest import read_manifests


class DownloadExtraMissing(RuntimeError):
    pass


@dataclass(frozen=True)
class DownloadResult:
    video_id: str
    ok: bool
    error: str = ""


def _yt_dlp():
    try:
        import yt_dlp
    except ImportError as exc:
        raise DownloadExtraMissing(
            "downloading needs yt-dlp: install goalcraft with the download extra, "
            "pip install -e \".[download]\""
        ) from exc
    return yt_dlp


def download_manifest_videos(manifests: Sequence[Path], corpus_root: Path, *, limit: int | None = None,
                             max_height: int = 360) -> list[DownloadResult]:
    """Download every manifest video whose file is missing (a rejected ``video_missing`` row)."""
    yt_dlp = _yt_dlp()
    records, _ = read_manifests(manifests, corpus_root, require_video=False)
    wanted = [r for r in records if not (corpus_root / r.video_path).is_file()][:limit]
    options = {
        "format": f"bestvideo[height<={max_height}][ext=mp4]/best[height<={max_height}]",
        "outtmpl": str(corpus_root / "videos" / "%(id)s.%(ext)s"),
        "writeautomaticsub": True,
        "writesubtitles": True,
        "subtitleslangs": ["en"],
        "subtitlesformat": "vtt",
        "paths": {"subtitle": str(corpus_root / "transcripts")},
        "quiet": True,
        "noprogress": True,
    }
    results = []
    with yt_dlp.YoutubeDL(options) as ydl:
        for record in wanted:
            try:
                ydl.download([record.link])
                results.append(DownloadResult(record.id, True))
            except Exception as exc:  # one failed video must not stop the rest
                results.append(DownloadResult(record.id, False, str(exc)))
    return results
