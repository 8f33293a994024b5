"""(placeholder: filled in by its owner)"""

from flask import Blueprint

bp = Blueprint("revenue", __name__)
