"""CropFormer (ESG paper §4.1) and its Mask2Former baseline.

Modules: ``crops`` (the four corner crops), ``model`` (the network), ``fusion`` (inference fusion at
the original resolution), ``segmenter`` (the registered ``cropformer`` / ``mask2former`` segmenters),
``hf_mask2former`` (``mask2former`` on a published Hugging Face folder).
Nothing heavy is imported here, so listing components stays fast.
"""

__all__: list[str] = []
