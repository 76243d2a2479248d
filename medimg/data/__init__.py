"""Data: embedded synthetic datasets for every task (``medimg.data.synthetic``) and loaders for
the real public datasets in the layouts users have on disk, plus splitting and batch-level
device-side augmentation.

DICOM (``[dicom]`` extra, pydicom) and NIfTI (``[nifti]`` extra, nibabel) are imported only
when used.
"""

from medimg.data import synthetic
from medimg.data.boxes import masks_to_boxes
from medimg.data.dicom import DicomSliceDataset, read_dicom, read_dicom_series
from medimg.data.drive import DRIVEDataset
from medimg.data.image_folder import ImageFolderDataset
from medimg.data.loader import DeviceAugmentLoader, to_device
from medimg.data.medmnist import MedMNISTDataset
from medimg.data.nifti import NiftiDataset, read_nifti, read_nifti_labels
from medimg.data.split import split

__all__ = [
    "DRIVEDataset",
    "DeviceAugmentLoader",
    "DicomSliceDataset",
    "ImageFolderDataset",
    "MedMNISTDataset",
    "NiftiDataset",
    "masks_to_boxes",
    "read_dicom",
    "read_dicom_series",
    "read_nifti",
    "read_nifti_labels",
    "split",
    "synthetic",
    "to_device",
]
