"""Detection of forget-target requests: prompt classifiers, semantic and lexical matchers."""

# Importing the package fills the classifier registry (PEFT-style: register where defined).
from classifiers import logistic as _logistic  # noqa: F401
from classifiers.base import PromptClassifier, classifier_names, get_classifier, register_classifier

__all__ = ["PromptClassifier", "classifier_names", "get_classifier", "register_classifier"]
