"""The data layer: read, validate and normalize relation-extraction files.

``read_dataset(path)`` reads KLUE JSON, the competition CSV, JSON lines or Parquet into a
:class:`Dataset` whose ``frame`` has the columns of :data:`COLUMNS` (entity end indices
inclusive) and whose ``labels`` is a :class:`LabelSet`. ``stratified_split`` carves a
validation set out of a training set; ``relex.data.repair`` repairs what real annotation
files get wrong (``relex data fix``). Light to import: pandas, numpy and scikit-learn load on
first use.
"""

from relex.data.io import COLUMNS, Dataset, read_dataset
from relex.data.labels import LabelSet
from relex.data.split import stratified_split

__all__ = ["COLUMNS", "Dataset", "LabelSet", "read_dataset", "stratified_split"]
