"""Guided lessons: each a data file (setup, question, verdict) checked live against the engine."""
from .loader import LessonError, load_dir, load_file, load_lessons
from .schema import CHARTS, STATS, Lesson
from .verdict import evaluate, ready

__all__ = ["CHARTS", "STATS", "Lesson", "LessonError", "evaluate", "load_dir", "load_file", "load_lessons", "ready"]
