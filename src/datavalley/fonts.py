"""Where the CJK font for PDFs comes from: Noto Sans SC (SIL OFL 1.1) in the ``pylopdf-fonts-zh-cn`` wheel,
else ``DATAVALLEY_CJK_FONT``, else a Debian font package (fonts-noto-cjk, fonts-wqy-microhei)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

_SYSTEM = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
)


@functools.cache
def cjk_font() -> Path | None:
    """A font file with Chinese glyphs, or None (PDFs then fall back to Latin core fonts)."""
    configured = os.environ.get("DATAVALLEY_CJK_FONT")
    if configured and Path(configured).is_file():
        return Path(configured)
    try:
        import pylopdf_fonts_zh_cn

        bundled = Path(pylopdf_fonts_zh_cn.sans_path())
        if bundled.is_file():
            return bundled
    except ImportError:
        pass
    for path in _SYSTEM:
        if Path(path).is_file():
            return Path(path)
    return None
