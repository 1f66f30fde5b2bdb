/* placeholder */
typedef int ova_placeholder_state;
