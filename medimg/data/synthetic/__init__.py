"""Procedural medical-image datasets, generated on the fly with torch ops (no files, no downloads).

Every dataset is a map-style ``torch.utils.data.Dataset`` whose sample ``i`` depends only on
``(seed, i)`` and the dataset's settings, at any ``size``, with pixel values float32 in
[0, 1]. Batches are rendered vectorised: ``ds.get_batch(indices)`` (the same samples as
``ds[i]``, stacked; also what a ``DataLoader`` fetches through ``__getitems__``) and
``ds.batch(n, generator)`` (fresh samples for endless training streams).

- ``BrainMRI``: axial slices with or without a tumour; label, tumour mask and box.
- ``ChestXRay``: frontal radiographs, normal or pneumonia (3:1 by default).
- ``RetinaVessels``: fundus images with vessel masks and field of view.
- ``EnhancementPairs``: clean/degraded pairs (noise, Rician noise, blur + x2 down, low contrast).
- ``CineSequences``: beating-ventricle sequences, normal or abnormal motion, with an EF value.

Example:
    >>> from medimg.data.synthetic import BrainMRI
    >>> ds = BrainMRI(1000, size=128, seed=0)
    >>> loader = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True)  # batches render vectorised
"""

from medimg.data.synthetic._base import SyntheticDataset
from medimg.data.synthetic.brain_mri import BrainMRI
from medimg.data.synthetic.chest_xray import ChestXRay
from medimg.data.synthetic.cine import CineSequences
from medimg.data.synthetic.enhancement import EnhancementPairs
from medimg.data.synthetic.retina import RetinaVessels

__all__ = ["BrainMRI", "ChestXRay", "CineSequences", "EnhancementPairs", "RetinaVessels", "SyntheticDataset"]
