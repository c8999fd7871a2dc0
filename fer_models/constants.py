"""The FER2013 format: the seven classes in label order, the three splits, the image size and
the Kaggle CSV's columns. A module of its own so that the readers (``data.py``, ``fast_csv.py``)
and everything else import it without importing each other.

Example:
    >>> EMOTIONS[3], SPLITS[0], NUM_PIXELS
    ('Happy', 'Training', 2304)
"""
EMOTIONS = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
SPLITS = ("Training", "PublicTest", "PrivateTest")
IMAGE_SIZE = 48
NUM_PIXELS = IMAGE_SIZE * IMAGE_SIZE
REQUIRED_COLUMNS = ("emotion", "pixels", "Usage")
