"""Evaluation: PoseTrack pose-estimation mAP equal to poseval's, and the prediction-file writer."""

from cmpose.eval.posetrack import evaluate, format_table
from cmpose.eval.writer import PersonPrediction, write_prediction_dir, write_predictions

__all__ = ["PersonPrediction", "evaluate", "format_table", "write_prediction_dir", "write_predictions"]
