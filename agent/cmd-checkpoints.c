/* placeholder */
typedef int ova_placeholder_cmd_checkpoints;
