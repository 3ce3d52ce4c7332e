"""Which compressed DICOM transfer syntaxes decode here, and one decoder plugin of our own.

pydicom 3 decodes through plugins: pylibjpeg-openjpeg (JPEG 2000, HTJ2K), pydicom itself (RLE,
deflate) and GDCM (python-gdcm: JPEG baseline, JPEG Lossless process 14 with any predictor and
with selection value 1, JPEG-LS lossless and near-lossless). pydicom's own GDCM plugin declines
JPEG Extended with 12-bit samples (1.2.840.10008.1.2.4.51), which GDCM decodes (checked against
an independent decoder); :func:`decode_frame` is a pydicom decoder plugin for that syntax,
added by :func:`register` under the label ``napari-nfdp-gdcm``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pydicom import uid
from pydicom.pixels import get_decoder
from pydicom.pixels.decoders import JPEGExtended12BitDecoder

from napari_nfdp.io.images import ImageReadError

if TYPE_CHECKING:
    from pydicom.pixels.decoders.base import DecodeRunner

try:
    import gdcm
except ImportError:  # the dependency is declared; a broken install still reads other syntaxes
    gdcm = None

logger = logging.getLogger(__name__)

PLUGIN_LABEL = "napari-nfdp-gdcm"
#: What the plugin needs, per transfer syntax (pydicom's plugin interface asks for it).
DECODER_DEPENDENCIES: dict[str, tuple[str, ...]] = {uid.JPEGExtended12Bit: ("python-gdcm>=3.2",)}
_PIXEL_DATA = (0x7FE0, 0x0010)


def is_available(transfer_syntax: str) -> bool:
    """True when this module's plugin can decode ``transfer_syntax`` (pydicom's interface)."""
    return gdcm is not None and transfer_syntax in DECODER_DEPENDENCIES


def decode_frame(src: bytes, runner: DecodeRunner) -> bytes:
    """One frame of grey JPEG Extended pixel data with 9 to 12-bit samples, decoded by GDCM.

    Raises for anything else (colour, 8-bit samples: pydicom's other plugins decode those),
    and when GDCM returns fewer bytes than the frame needs. GDCM first tries its 16-bit decoder
    and says "Unsupported JPEG data precision 12" on the process's stderr before it succeeds.
    """
    if runner.samples_per_pixel != 1 or not 8 < runner.bits_stored <= 12:
        raise NotImplementedError(
            f"{PLUGIN_LABEL} decodes grey 12-bit JPEG Extended only, not "
            f"{runner.samples_per_pixel} sample(s) of {runner.bits_stored} bits"
        )
    fragment = gdcm.Fragment()
    fragment.SetByteStringValue(src)
    fragments = gdcm.SequenceOfFragments.New()
    fragments.AddFragment(fragment)
    pixel_data = gdcm.DataElement(gdcm.Tag(*_PIXEL_DATA))
    pixel_data.SetValue(fragments.__ref__())
    image = gdcm.Image()
    image.SetNumberOfDimensions(2)
    image.SetDimensions((runner.columns, runner.rows, 1))
    image.SetDataElement(pixel_data)
    image.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGExtendedProcess2_4))
    kind = gdcm.PhotometricInterpretation.GetPIType(str(runner.photometric_interpretation))
    image.SetPhotometricInterpretation(gdcm.PhotometricInterpretation(kind))
    bits = runner.bits_stored
    image.SetPixelFormat(gdcm.PixelFormat(1, 16, bits, bits - 1, runner.pixel_representation))
    frame = image.GetBuffer().encode("utf-8", "surrogateescape")  # SWIG gives char* as str
    expected = runner.rows * runner.columns * 2
    if len(frame) < expected:
        raise ValueError(f"GDCM decoded {len(frame)} bytes, the frame needs {expected}")
    return frame[:expected]


def register() -> None:
    """Add :func:`decode_frame` to pydicom's JPEG Extended decoder (once; not thread-safe, so
    called when :mod:`napari_nfdp.io.dicom` is imported)."""
    try:
        JPEGExtended12BitDecoder.add_plugin(PLUGIN_LABEL, (__name__, "decode_frame"))
    except ValueError:  # added already
        logger.debug("the %s decoder plugin is already registered", PLUGIN_LABEL)


def check_decodable(name: str, transfer_syntax: str | None) -> None:
    """Raise :class:`ImageReadError` naming the file and its transfer syntax when no installed
    pydicom plugin decodes it (None: the file names none, pydicom guesses an uncompressed one)."""
    if not transfer_syntax:
        return
    syntax = uid.UID(transfer_syntax)
    what = f"{syntax.name} ({syntax})" if syntax.is_transfer_syntax else f"{syntax}"
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise ImageReadError(
            f"{name}: its transfer syntax {what} is not one napari-nfdp decodes "
            "(uncompressed, deflate, RLE, JPEG, JPEG Lossless, JPEG-LS, JPEG 2000, HTJ2K)"
        ) from None
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "no decoder plugin"
        raise ImageReadError(
            f"{name}: no installed decoder reads its transfer syntax {what}: {missing}"
        )
