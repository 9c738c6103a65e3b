"""Import and export of bank items: YAML (canonical), Excel template, Moodle XML, GIFT."""

from question_bank.formats.common import ImportError_, item_to_yaml_dict, items_to_yaml, validate_records

__all__ = ["ImportError_", "item_to_yaml_dict", "items_to_yaml", "validate_records"]
