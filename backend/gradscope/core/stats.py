"""The statistics' names that every model family's chunk output shares a meaning for, across
families: which are per step (averaged over a row's steps) and which are sparse (NaN where not
measured, averaged over their finite values). Rows, records and histories read these."""

from gradscope.core import train, train_gan

PER_STEP_STATS = tuple(dict.fromkeys(train.PER_STEP_STATS + train_gan.PER_STEP_STATS))
SPARSE_STATS = tuple(dict.fromkeys(train.SPARSE_STATS + train_gan.SPARSE_STATS))
STAT_NAMES = tuple(dict.fromkeys(train.STAT_NAMES + train_gan.STAT_NAMES + train_gan.SPARSE_STATS))
