"""The question bank: YAML items and case studies, validated all-or-nothing."""

from question_bank.loader import Bank, BankError, Problem, Vocabulary, load_bank, open_bank
from question_bank.schema import JUDGE_OPTIONS, LETTERS, Case, Item, ItemType, Source, Status

__all__ = [
    "JUDGE_OPTIONS", "LETTERS", "Bank", "BankError", "Case", "Item", "ItemType", "Problem",
    "Source", "Status", "Vocabulary", "load_bank", "open_bank",
]
